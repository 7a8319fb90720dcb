r"""The variational autoencoder: Gaussian encoder, decoder likelihood, and its loss and gradients.

    encoder  x (B, P) --MLP--> h (B, 2D) = [mu, logvar]              q(z|x) = N(mu, diag(exp(logvar)))
    sample   z = mu + exp(logvar / 2) * eps,   eps (K, B, D) ~ N(0, I)
    decoder  z (K, B, D) --MLP--> out (K, B, O)                      p(x|z) = likelihood(out)

and one of the bounds of :mod:`minivae.objectives` on log p(x).  The loss is the
negative bound averaged over the batch, in nats per example:

    loss = -(1/B) sum_b L(x_b),   so   dL(x_b) = -1/B   seeds the backward pass.

Axis legend: K samples, B batch, P pixels, D latent units, O decoder outputs.
"""
from __future__ import annotations

import numpy as np

from . import gaussian as G
from . import objectives as obj
from .backend import Backend, get_backend
from .layers import MLP
from .likelihoods import make_likelihood


class LatentVariableModel:
    r"""What every minivae model shares: parameters by name, input checks, noise, the loss.

    A subclass builds its networks in ``__init__`` (then calls ``_finish_init``) and writes
    ``forward(x, objective, k, beta, eps) -> (bound (B,), cache, stats)``, ``backward(dbound, cache)
    -> grads``, ``log_weights(x, eps) -> (K, B)``, ``encode``, ``decode``, ``sample`` and
    ``latent_means``.  ``eps_dim`` is the width of the noise one sample needs.
    """

    output_layer: str = ""                    # name of the parameter holding the decoder's output bias

    def _setup(self, backend, seed, dtype, likelihood, sigma):
        self.backend = get_backend(backend, seed) if isinstance(backend, str) else backend
        self.xp = self.backend.xp
        self.dtype = np.dtype(dtype)
        self.likelihood = make_likelihood(likelihood, sigma)
        return np.random.default_rng(seed)

    def _finish_init(self, networks: dict):
        """Collect the networks' parameters as ``"<network>.<layer>.<W|b>"``."""
        self.networks = networks
        self.params = {f"{net}.{n}": p for net, mlp in networks.items() for n, p in mlp.params.items()}

    def _check_x(self, x):
        if getattr(x, "ndim", None) != 2 or x.shape[1] != self.x_dim:
            raise ValueError(f"x has shape {getattr(x, 'shape', type(x).__name__)} but the model "
                             f"expects (batch, {self.x_dim}): flatten images to rows of "
                             f"{self.x_dim} pixels.")
        return x.astype(self.dtype, copy=False)

    def _check_eps(self, eps, k, batch):
        if eps.shape != (k, batch, self.eps_dim):
            raise ValueError(f"eps has shape {eps.shape} but k={k} samples of a batch of {batch} "
                             f"need ({k}, {batch}, {self.eps_dim}).")
        return eps.astype(self.dtype, copy=False)

    def draw_eps(self, k: int, batch: int, rng=None):
        """eps ~ N(0, I) of shape (k, batch, eps_dim) from ``rng`` (default: the backend's generator)."""
        rng = self.backend.rng if rng is None else rng
        return rng.standard_normal((k, batch, self.eps_dim), dtype=self.dtype)

    def load_params(self, arrays) -> None:
        """Copy ``arrays`` (name -> host or device array) into the parameters, in place."""
        missing = sorted(set(self.params) - set(arrays))
        extra = sorted(set(arrays) - set(self.params))
        if missing or extra:
            raise ValueError(f"Parameters do not match the model: missing {missing}, "
                             f"unexpected {extra}.")
        for name, p in self.params.items():
            a = arrays[name]
            if tuple(a.shape) != p.shape:
                raise ValueError(f"Parameter {name} has shape {tuple(a.shape)} but the model "
                                 f"needs {p.shape}: the architecture differs.")
            p[...] = self.xp.asarray(a, dtype=p.dtype)

    def init_output_bias(self, mean_x) -> None:
        r"""Start the decoder's output at the data mean: b = logit(clip(mean_x, 0.001, 0.999)).

        For the Bernoulli decoder (Burda et al.'s code); for Gaussian decoders the mean part
        of the bias is set to ``mean_x`` itself.  ``mean_x`` is (P,), the mean training pixel.
        """
        xp = self.xp
        m = xp.asarray(mean_x, dtype=self.dtype)
        b = self.params[self.output_layer]
        if self.likelihood.name == "bernoulli":
            m = xp.clip(m, 0.001, 0.999)
            b[...] = xp.log(m) - xp.log1p(-m)
        else:
            b[: self.x_dim] = m

    @property
    def n_params(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    def loss_and_grads(self, x, objective: str = "elbo", k: int = 1, beta: float = 1.0,
                       eps=None, rng=None):
        r"""Loss = -(1/B) sum_b L(x_b) in nats per example, and dLoss/dparam for every parameter.

        ``eps`` (k, B, eps_dim) makes the call deterministic; otherwise it is drawn from ``rng``
        (default: the backend's generator).  Returns ``(loss, grads, stats)``; ``loss`` and the
        stats are 0-d arrays on the backend's device (read them with ``float()`` off the hot loop).
        """
        bound, cache, stats = self.forward(x, objective, k, beta, eps, rng)
        B = bound.shape[0]
        dbound = self.xp.full(B, -1.0 / B, dtype=self.dtype)
        return -bound.mean(), self.backward(dbound, cache), stats

    def bound(self, x, objective: str = "elbo", k: int = 1, beta: float = 1.0, eps=None, rng=None):
        """The bound per example (B,), in nats, without gradients."""
        return self.forward(x, objective, k, beta, eps, rng)[0]

    def _prepare(self, x, objective, k, eps, rng):
        if objective not in obj.OBJECTIVES:
            raise ValueError(f"Unknown objective {objective!r}: choose one of "
                             f"{', '.join(obj.OBJECTIVES)}.")
        x = self._check_x(x)
        eps = self.draw_eps(k, x.shape[0], rng) if eps is None else self._check_eps(eps, k, x.shape[0])
        return x, eps


class VAE(LatentVariableModel):
    r"""A VAE (Kingma & Welling 2013) that also trains as an IWAE (Burda et al. 2016).

    Args:
        x_dim: pixels per example P.
        latent_dim: latent units D.
        encoder_hidden, decoder_hidden: hidden layer sizes of the two MLPs.
        activation: hidden activation (see :data:`minivae.layers.ACTIVATIONS`).
        likelihood: ``"bernoulli"``, ``"gaussian"`` (fixed ``sigma``) or ``"gaussian_learned"``.
        sigma: the fixed decoder standard deviation of the ``"gaussian"`` likelihood.
        dtype: ``"float32"`` (training) or ``"float64"`` (gradient checks).
        seed: seeds the Glorot initialisation (drawn on the host: same weights on every backend).
        backend: ``"numpy"``, ``"cupy"`` or a :class:`~minivae.backend.Backend`.

    Parameters live in ``self.params`` under names such as ``"encoder.0.W"`` and
    ``"decoder.2.b"``; optimizers update those arrays in place.
    """

    def __init__(self, x_dim: int = 784, latent_dim: int = 50, encoder_hidden=(200, 200),
                 decoder_hidden=(200, 200), activation: str = "tanh",
                 likelihood: str = "bernoulli", sigma: float = 1.0, dtype: str = "float32",
                 seed: int = 0, backend: str | Backend = "numpy"):
        rng = self._setup(backend, seed, dtype, likelihood, sigma)
        self.config = dict(x_dim=int(x_dim), latent_dim=int(latent_dim),
                           encoder_hidden=[int(h) for h in encoder_hidden],
                           decoder_hidden=[int(h) for h in decoder_hidden],
                           activation=activation, likelihood=likelihood, sigma=float(sigma),
                           dtype=self.dtype.name, seed=int(seed))
        self.x_dim, self.latent_dim = int(x_dim), int(latent_dim)
        self.eps_dim = self.latent_dim
        xp = self.xp
        self.encoder = MLP([x_dim, *encoder_hidden, 2 * latent_dim], activation,
                           rng=rng, dtype=self.dtype, xp=xp)
        self.decoder = MLP([latent_dim, *decoder_hidden, self.likelihood.n_outputs(x_dim)],
                           activation, rng=rng, dtype=self.dtype, xp=xp)
        self.output_layer = f"decoder.{len(self.decoder.sizes) - 2}.b"
        self._finish_init({"encoder": self.encoder, "decoder": self.decoder})

    # ------------------------------------------------------------ inference and generation
    def encode(self, x):
        """(mu, logvar) of q(z | x), each (B, D)."""
        h, _ = self.encoder.forward(self._check_x(x))
        return h[:, : self.latent_dim], h[:, self.latent_dim:]

    def decode(self, z):
        """E[x | z], the mean of p(x | z): pixel probabilities for the Bernoulli decoder."""
        out, _ = self.decoder.forward(z.astype(self.dtype, copy=False))
        return self.likelihood.mean(out)

    def reconstruct(self, x):
        """decode(mu(x)): the decoder's mean at the encoder's mean."""
        mu, _ = self.encode(x)
        return self.decode(mu)

    def sample(self, n: int, rng=None):
        """n draws z ~ p(z) = N(0, I) decoded to E[x | z], (n, P)."""
        rng = self.backend.rng if rng is None else rng
        return self.decode(rng.standard_normal((n, self.latent_dim), dtype=self.dtype))

    def latent_means(self, x, rng=None):
        """[E_q(z|x)[z]] = [mu(x)], one (B, D) array per stochastic layer (for active units)."""
        return [self.encode(x)[0]]

    # ------------------------------------------------------------ the bound and its gradient
    def forward(self, x, objective: str = "elbo", k: int = 1, beta: float = 1.0, eps=None, rng=None):
        r"""The bound L(x_b) per example (B,), with everything backward needs.

        Returns ``(bound, cache, stats)``; stats holds 0-d device arrays (no host sync):
        ``kl`` the mean closed-form KL, ``recon`` the mean -log p(x|z) over samples and batch.
        """
        x, eps = self._prepare(x, objective, k, eps, rng)
        D = self.latent_dim

        h, enc_cache = self.encoder.forward(x)                        # (B, 2D)
        mu, logvar = h[:, :D], h[:, D:]                                # (B, D) each
        z, rep_cache = G.reparameterize_forward(mu, logvar, eps)       # (K, B, D)
        out, dec_cache = self.decoder.forward(z)                       # (K, B, O)
        log_px_z, lik_cache = self.likelihood.forward(x, out)          # (K, B)
        kl, kl_cache = G.kl_normal_std_forward(mu, logvar)             # (B,)
        stats = {"kl": kl.mean(), "recon": -log_px_z.mean()}
        cache = dict(objective=objective, beta=beta, enc=enc_cache, rep=rep_cache,
                     dec=dec_cache, lik=lik_cache, kl=kl_cache)

        if objective == "elbo":                                        # analytic KL
            bound, cache["obj"] = obj.elbo_forward(log_px_z, kl, beta)
            return bound, cache, stats

        # log w = log p(x|z) + beta (log p(z) - log q(z|x)),  (K, B)
        log_pz, cache["pz"] = G.log_std_normal_forward(z)
        log_qz, cache["qz"] = G.log_normal_forward(z, mu, logvar)
        log_w = log_pz - log_qz
        log_w *= beta
        log_w += log_px_z
        if objective == "mc_elbo":
            bound, cache["obj"] = obj.mc_elbo_forward(log_w)
        else:
            bound, cache["obj"] = obj.iwae_forward(log_w)
        return bound, cache, stats

    def backward(self, dbound, cache):
        r"""Gradients of sum_b dbound_b L(x_b) for every parameter, the forward in reverse.

        1. objective:   dlog_px_z (K, B) and dkl (B,)       [elbo]
                        or dlog_w (K, B) = w_tilde dL, dL/K  [iwae, mc_elbo];
                        then dlog_px_z = dlog_w, dlog p(z) = beta dlog_w, dlog q = -beta dlog_w
        2. likelihood:  dout (K, B, O)
        3. decoder:     dz (K, B, D), decoder grads
        4. densities:   dz += -z dlog p(z) - (z - mu)/sigma^2 dlog q;  dmu, dlogvar from log q
        5. reparam:     dmu += sum_K dz,  dlogvar += sum_K dz eps sigma / 2
        6. KL:          dmu += dkl mu,  dlogvar += dkl (sigma^2 - 1) / 2      [elbo]
        7. encoder:     dh = [dmu, dlogvar] (B, 2D) -> encoder grads (no dx: x is data)

        (The code takes step 6 before step 5, in the branch of step 4: a sum's order is free.)
        """
        xp = self.xp
        beta = cache["beta"]
        if cache["objective"] == "elbo":
            dlog_px_z, dkl = obj.elbo_backward(dbound, cache["obj"])
        elif cache["objective"] == "mc_elbo":
            dlog_px_z = obj.mc_elbo_backward(dbound, cache["obj"])
        else:
            dlog_px_z = obj.iwae_backward(dbound, cache["obj"])

        dout = self.likelihood.backward(dlog_px_z, cache["lik"])      # (K, B, O)
        dz, dec_grads = self.decoder.backward(dout, cache["dec"])     # (K, B, D)

        if cache["objective"] == "elbo":
            dmu, dlogvar = G.kl_normal_std_backward(dkl, cache["kl"])
        else:
            dlog_w = dlog_px_z
            dz += G.log_std_normal_backward(beta * dlog_w, cache["pz"])
            dz_q, dmu, dlogvar = G.log_normal_backward(-beta * dlog_w, cache["qz"])
            dz += dz_q

        dmu_r, dlogvar_r = G.reparameterize_backward(dz, cache["rep"])  # (B, D)
        dh = xp.concatenate([dmu + dmu_r, dlogvar + dlogvar_r], axis=-1)  # (B, 2D)
        _, enc_grads = self.encoder.backward(dh, cache["enc"], need_dx=False)

        grads = {f"encoder.{n}": g for n, g in enc_grads.items()}
        grads.update({f"decoder.{n}": g for n, g in dec_grads.items()})
        return grads

    def log_weights(self, x, eps):
        r"""log w = log p(x|z) + log p(z) - log q(z|x) for z = mu + sigma eps:  (K, B), forward only."""
        x = self._check_x(x)
        h, _ = self.encoder.forward(x)
        mu, logvar = h[:, : self.latent_dim], h[:, self.latent_dim:]
        z, _ = G.reparameterize_forward(mu, logvar, eps.astype(self.dtype, copy=False))
        out, _ = self.decoder.forward(z)
        log_w = self.likelihood.forward(x, out)[0]
        log_w += G.log_std_normal_forward(z)[0]
        log_w -= G.log_normal_forward(z, mu, logvar)[0]
        return log_w
