r"""A convolutional VAE: the VAE of :mod:`minivae.model` with residual convolutional networks.

    encoder  x (B, C H W) -> Unflatten (C, H, W) -> Conv2d 3x3 (C -> c_1)
                          -> ResidualBlock "down" (c_1 -> c_2) -> ... -> (c_L, H / 2^(L-1), W / 2^(L-1))
                          -> act -> Flatten -> Dense -> h = [mu, logvar] (B, 2D)
    decoder  z (K, B, D)  -> Dense -> act -> Unflatten (c_L, h, w)
                          -> ResidualBlock "up" (c_L -> c_(L-1)) -> ... -> (c_1, H, W)
                          -> act -> Conv2d 3x3 (c_1 -> C_out) -> Flatten -> Bias -> out (K, B, O)

with ``channels = (c_1, ..., c_L)``, each "down" block halving the image and each "up" block
doubling it (:class:`minivae.conv.ResidualBlock`, each starting as its skip: its branch's last
convolution starts at 0), and C_out = O / (H W) output planes: C for a
Bernoulli decoder, 2C ([means, log-scales]) for the discretised logistic.  The last layer is a
per-output bias (O,), so :meth:`init_output_bias` starts E[x | z] at the mean training image as
for the dense VAE.  The decoder applies every layer to the leading (K, B) axes alike, so the K
importance samples go through it as K B images.

Nothing else differs from :class:`minivae.model.VAE`: a model is its log-weight terms, written
once there (``log_weight_terms`` / ``log_weight_backward``), so every objective, estimator,
evaluation, checkpoint and figure works on a ConvVAE unchanged.
"""
from __future__ import annotations

import numpy as np

from .backend import Backend
from .checks import InvalidInput, check_int, check_sizes
from .conv import Bias, Conv2d, Flatten, ResidualBlock, Unflatten
from .layers import Dense, Sequential, make_activation
from .model import VAE


def conv_networks(image_shape, latent_dim: int, channels, n_outputs: int, activation: str,
                  rng: np.random.Generator, dtype, xp):
    r"""(encoder, decoder): the two :class:`~minivae.layers.Sequential` networks drawn above.

    image_shape (C, H, W); H and W must be divisible by 2^(L-1) for L = len(channels), so that
    the decoder's "up" blocks come back to exactly (H, W); n_outputs = O, a multiple of H W.
    """
    C, H, W = image_shape
    L = len(channels)
    if H % 2 ** (L - 1) or W % 2 ** (L - 1):
        raise InvalidInput(f"{L} channel stages halve a {H}x{W} image {L - 1} times, which needs H "
                           f"and W divisible by {2 ** (L - 1)}: use fewer channel stages.")
    if n_outputs % (H * W):
        raise InvalidInput(f"the likelihood needs {n_outputs} outputs, not a whole number of "
                           f"{H}x{W} planes.")
    h, w = H // 2 ** (L - 1), W // 2 ** (L - 1)                  # the smallest image
    flat = channels[-1] * h * w
    kw = dict(rng=rng, dtype=dtype, xp=xp)
    encoder = Sequential(
        [Unflatten((C, H, W)), Conv2d(C, channels[0], 3, padding=1, **kw)]
        + [ResidualBlock(a, b, "down", activation, branch_init="zeros", **kw) for a, b in zip(channels, channels[1:])]
        + [make_activation(activation), Flatten((channels[-1], h, w)),
           Dense(flat, 2 * latent_dim, **kw)])
    c_out = n_outputs // (H * W)
    up = list(zip(channels[::-1], channels[::-1][1:]))
    decoder = Sequential(
        [Dense(latent_dim, flat, **kw), make_activation(activation),
         Unflatten((channels[-1], h, w))]
        + [ResidualBlock(a, b, "up", activation, branch_init="zeros", **kw) for a, b in up]
        + [make_activation(activation),
           Conv2d(channels[0], c_out, 3, padding=1, init="zeros", **kw),    # starts at the bias
           Flatten((c_out, H, W)), Bias(n_outputs, dtype=dtype, xp=xp)])
    return encoder, decoder


class ConvVAE(VAE):
    r"""A VAE whose encoder and decoder are residual convolutional networks (see the module).

    Args:
        image_shape: (C, H, W) of the images; x is given as rows (B, C H W) in CHW order.
        latent_dim: latent units D.
        channels: channels of each resolution stage, (c_1, ..., c_L); L - 1 halvings.
        activation: ``"elu"`` by default, as in the ResNet VAEs of Kingma et al. (2016, IAF): with
            ``"relu"`` the default model's posterior collapsed on MNIST (KL 0 within 50 Adam steps
            at lr 1e-3, the loss stuck at the mean image's), with ELU and tanh it did not.
        likelihood, sigma, dtype, seed, backend: as for :class:`~minivae.model.VAE`
            (``"discretized_logistic"`` scores 8-bit colour or grey images, ``"bernoulli"``
            binarised ones).

    Parameters are named ``"encoder.<i>.<name>"`` and ``"decoder.<i>.<name>"`` for layer i of the
    network, e.g. ``"encoder.1.W"`` (the first convolution) or ``"decoder.3.conv1.W"``.
    """

    def __init__(self, image_shape=(1, 28, 28), latent_dim: int = 32, channels=(32, 64, 64),
                 activation: str = "elu", likelihood: str = "bernoulli", sigma: float = 1.0,
                 dtype: str = "float32", seed: int = 0, backend: str | Backend = "numpy"):
        image_shape = check_sizes("image_shape", image_shape)
        if len(image_shape) != 3:
            raise InvalidInput(f"image_shape must be (channels, height, width), got "
                               f"{tuple(image_shape)}.")
        latent_dim = check_int("latent_dim", latent_dim, 1, "latent_dim counts latent units")
        channels = check_sizes("channels", channels)
        if not channels:
            raise InvalidInput("channels must name at least one stage, e.g. (32, 64, 64).")
        rng = self._setup(backend, seed, dtype, likelihood, sigma, activation)
        self.image_shape = tuple(image_shape)
        self.x_dim = int(np.prod(image_shape))
        self.latent_dim = self.eps_dim = latent_dim
        self.config = dict(image_shape=list(image_shape), latent_dim=latent_dim,
                           channels=list(channels), activation=activation, likelihood=likelihood,
                           sigma=float(sigma), dtype=self.dtype.name, seed=int(seed))
        self.encoder, self.decoder = conv_networks(
            self.image_shape, latent_dim, channels, self.likelihood.n_outputs(self.x_dim),
            activation, rng, self.dtype, self.xp)
        self.output_layer = f"decoder.{len(self.decoder.layers) - 1}.b"
        self._finish_init({"encoder": self.encoder, "decoder": self.decoder})

    def share_values(self, k: int) -> int:
        """k (sum_l c_l H_l W_l + O): the decoder's feature maps at each stage l (H_l = H / 2^l)
        and its outputs, for each of k samples
        (:meth:`minivae.model.LatentVariableModel.share_values`)."""
        _, H, W = self.image_shape
        maps = sum(c * (H >> i) * (W >> i) for i, c in enumerate(self.config["channels"]))
        return k * (maps + self.likelihood.n_outputs(self.x_dim))

    @staticmethod
    def parameter_shapes(config: dict) -> dict:
        """name -> shape of every parameter of the ConvVAE that ``config`` (its ``self.config``)
        describes; the networks are built once on the host to read them."""
        kwargs = {k: v for k, v in config.items() if k not in ("type", "seed", "dtype")}
        model = ConvVAE(**kwargs, dtype="float32", seed=0, backend="numpy")
        return {name: tuple(p.shape) for name, p in model.params.items()}
