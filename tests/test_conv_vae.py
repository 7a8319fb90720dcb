"""ConvVAE: the VAE's log-weight terms with convolutional networks, so every bound, estimator,
checkpoint and figure works on it unchanged.  Gradient checks of the whole model (float64)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minivae.backend import to_host
from minivae.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from minivae.checks import InvalidInput
from minivae.conv_vae import ConvVAE
from minivae.optim import Adam

from .backends import BACKENDS
from .gradcheck import check_loss_gradients

SMALL = dict(latent_dim=2, channels=(2, 3), activation="tanh", dtype="float64")


def small_model(image_shape=(1, 4, 4), likelihood="bernoulli", backend="numpy", seed=0):
    """A tiny ConvVAE with every parameter drawn at random (the zero-initialised convolutions
    would hide the paths through them from a gradient check)."""
    model = ConvVAE(image_shape, likelihood=likelihood, backend=backend, seed=seed, **SMALL)
    rng = np.random.default_rng(seed + 1)
    for p in model.params.values():
        p[...] = model.xp.asarray(0.5 * rng.standard_normal(p.shape))
    return model


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("likelihood", ["bernoulli", "discretized_logistic"])
@pytest.mark.parametrize("objective,k", [("elbo", 1), ("mc_elbo", 2), ("iwae", 3)])
def test_conv_vae_parameter_gradients_match_finite_differences(backend, likelihood, objective, k):
    shape = (1, 4, 4) if likelihood == "bernoulli" else (3, 4, 4)
    model = small_model(shape, likelihood, backend)
    check_loss_gradients(model, objective, likelihood, k, 2, 1.0, np.random.default_rng(3),
                         label="ConvVAE ")


@settings(deadline=None, max_examples=5)
@given(seed=st.integers(0, 2**31 - 1), k=st.integers(1, 3), b=st.integers(1, 3))
def test_conv_vae_iwae_gradient_over_drawn_weights_and_sizes(seed, k, b):
    check_loss_gradients(small_model(seed=seed), "iwae", "bernoulli", k, b, 1.0,
                         np.random.default_rng(seed), label="ConvVAE ")


def test_every_estimator_runs_and_the_iwae_estimator_is_the_iwae_gradient():
    model = small_model()
    rng = np.random.default_rng(0)
    x = (rng.random((3, 16)) < 0.5).astype(float)
    eps = rng.standard_normal((4, 3, 2))
    loss, grads, _ = model.loss_and_grads(x, "iwae", 4, eps=eps)
    est_loss, est_grads, _ = model.estimator_loss_and_grads(x, "iwae", 4, eps=eps)
    np.testing.assert_allclose(est_loss, loss, rtol=1e-12)
    for name in grads:
        np.testing.assert_allclose(est_grads[name], grads[name], rtol=1e-10, atol=1e-12)
    for estimator in ("stl", "dreg", "miwae", "piwae", "ciwae"):
        m = 2 if estimator in ("miwae", "piwae") else 1          # m groups of k: 4 samples
        _, g, _ = model.estimator_loss_and_grads(x, estimator, 4 // m, m=m, eps=eps)
        assert set(g) == set(model.params)
        assert all(np.isfinite(v).all() for v in g.values())


def test_shapes_of_encode_decode_sample_and_reconstruct_on_colour_images():
    model = ConvVAE((3, 8, 8), latent_dim=5, channels=(4, 6, 6), likelihood="discretized_logistic")
    assert model.x_dim == 192 and model.params[model.output_layer].shape == (2 * 192,)
    x = np.random.default_rng(0).integers(0, 256, (7, 192)).astype(np.float32) / 255
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (7, 5)
    assert model.decode(np.zeros((2, 7, 5), np.float32)).shape == (2, 7, 192)
    assert model.reconstruct(x).shape == (7, 192)
    assert model.sample(4, np.random.default_rng(1)).shape == (4, 192)
    assert model.bound(x, "iwae", 3).shape == (7,)


def test_the_decoder_starts_at_the_mean_image():
    """The last convolution starts at 0, so E[x | z] = the output bias = the mean image."""
    x = (np.random.default_rng(0).random((50, 64)) < 0.3).astype(np.float32)
    model = ConvVAE((1, 8, 8), latent_dim=3, channels=(4, 4))
    model.init_output_bias(x.mean(axis=0))
    z = np.random.default_rng(1).standard_normal((5, 3)).astype(np.float32)
    np.testing.assert_allclose(model.decode(z), np.broadcast_to(x.mean(axis=0), (5, 64)),
                               rtol=1e-5, atol=1e-6)


def test_parameter_shapes_from_the_config_alone():
    model = ConvVAE((3, 8, 8), latent_dim=4, channels=(4, 8), likelihood="discretized_logistic")
    shapes = ConvVAE.parameter_shapes({"type": "ConvVAE", **model.config})
    assert shapes == {n: p.shape for n, p in model.params.items()}


def test_checkpoint_round_trip_keeps_the_model_and_its_adam_state(tmp_path):
    model = ConvVAE((1, 8, 8), latent_dim=3, channels=(4, 4), seed=2)
    x = (np.random.default_rng(0).random((6, 64)) < 0.5).astype(np.float32)
    opt = Adam(lr=1e-3)
    _, grads, _ = model.loss_and_grads(x, "iwae", 2)
    opt.step(model.params, grads)
    save_checkpoint(tmp_path / "c.npz", model, opt, {"epoch": 1})
    meta, _ = read_checkpoint(tmp_path / "c.npz")
    assert meta["model"]["type"] == "ConvVAE" and meta["model"]["channels"] == [4, 4]
    loaded, loaded_opt, train = load_checkpoint(tmp_path / "c.npz")
    assert isinstance(loaded, ConvVAE) and train["epoch"] == 1 and loaded_opt.t == 1
    eps = np.random.default_rng(1).standard_normal((2, 6, 3)).astype(np.float32)
    assert float(loaded.loss_and_grads(x, "iwae", 2, eps=eps)[0]) == \
        float(model.loss_and_grads(x, "iwae", 2, eps=eps)[0])


def test_a_checkpoint_whose_sizes_build_no_model_is_one_clear_error(tmp_path):
    import json
    model = ConvVAE((1, 8, 8), latent_dim=3, channels=(4, 4))
    save_checkpoint(tmp_path / "c.npz", model, None, {})
    with np.load(tmp_path / "c.npz") as z:
        arrays = dict(z)
    meta = json.loads(arrays["config.json"].tobytes())
    meta["model"]["image_shape"] = [1, 9, 9]                 # one halving of 9 pixels: no model
    arrays["config.json"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(CheckpointError, match="describes no model.*divisible by 2"):
        read_checkpoint(tmp_path / "bad.npz")


@pytest.mark.parametrize("kwargs,match", [
    ({"image_shape": (28, 28)}, "channels, height, width"),
    ({"channels": ()}, "at least one stage"),
    ({"image_shape": (1, 28, 28), "channels": (8, 8, 8, 8)}, "divisible by 8"),
    ({"latent_dim": 0}, "latent_dim"),
])
def test_bad_settings_are_one_clear_sentence(kwargs, match):
    with pytest.raises(InvalidInput, match=match):
        ConvVAE(**kwargs)


def test_on_the_device_the_parameters_are_backend_arrays():
    model = small_model()
    assert all(to_host(p).dtype == np.float64 for p in model.params.values())


def test_the_default_conv_vae_uses_its_latent_code_on_real_mnist():
    """A few Adam steps on binarised MNIST leave the default (ELU) model's KL well above 0; with
    ReLU this model's posterior collapsed to the prior within these steps (KL 2e-4 nats, the
    loss stuck at the mean image's), which is why ELU is the default."""
    from minivae.data import binarize
    from tests.realdata import mnist
    x = mnist().x_train[:3200]
    model = ConvVAE((1, 28, 28), latent_dim=8, channels=(8, 16, 16), seed=0)
    model.init_output_bias(x.mean(axis=0))
    opt, rng = Adam(lr=1e-3), np.random.default_rng(1)
    for step in range(120):
        xb = binarize(x[(step * 32) % 3200:(step * 32) % 3200 + 32], rng)
        loss, grads, stats = model.loss_and_grads(xb, "elbo", 1, rng=rng)
        opt.step(model.params, grads)
    assert float(stats["kl"]) > 2.0 and float(loss) < 180.0
