"""Small models the tests share (a helper module, not a test module)."""
import numpy as np

from minivae import VAE, Adam


def trained_pair():
    """A small VAE (10 pixels, 3 latents) after three Adam steps on the IWAE bound, and its Adam."""
    model = VAE(x_dim=10, latent_dim=3, encoder_hidden=(6,), decoder_hidden=(5,), seed=2)
    opt = Adam(lr=1e-3, eps=1e-4)
    x = (np.random.default_rng(0).random((4, 10)) < 0.5).astype(np.float32)
    for _ in range(3):
        _, grads, _ = model.loss_and_grads(x, "iwae", 2)
        opt.step(model.params, grads)
    return model, opt
