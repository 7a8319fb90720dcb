r"""The variational autoencoder: a model is its log-weight terms; a bound reduces them over K.

    encoder  x (B, P) --MLP--> h (B, 2D) = [mu, logvar]              q(z|x) = N(mu, diag(exp(logvar)))
    sample   z = mu + exp(logvar / 2) * eps,   eps (K, B, D) ~ N(0, I)
    decoder  z (K, B, D) --MLP--> out (K, B, O)                      p(x|z) = likelihood(out)

Every model writes its forward once, as the two terms of the log importance weight

    log w = log p(x | z) + beta * [log p(z) - log q(z | x)]       (K, B)
            `--- log_px ---'        `------ log_latent ------'

(``log_weight_terms``), with the latent term in closed form, -KL(q(z|x) || p(z)) (B,), when the
objective asks for it; and its backward directly beneath (``log_weight_backward``), the forward
in reverse.  :class:`LatentVariableModel` then does the same for every model: it reduces log w
over K with the objective's reduction (:mod:`minivae.objectives`) and seeds the backward with

    loss = -(1/B) sum_b L(x_b),   so   dbound_b = dLoss/dL(x_b) = -1/B.

Axis legend: K samples, B batch, P pixels, D latent units, O decoder outputs.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from . import gaussian as G
from . import parallel
from .backend import BACKENDS, Backend, get_backend
from .checks import (InvalidInput, InvalidInputType, check_choice, check_float_dtype, check_int,
                     check_positive, check_real, check_sizes)
from .layers import ACTIVATIONS, MLP
from .likelihoods import LIKELIHOODS, make_likelihood
from .objectives import OBJECTIVES, get_estimator, get_objective


class LatentLayer(NamedTuple):
    r"""One stochastic layer as the forward saw it: q(u | parent) = N(mu, diag(exp(logvar))), its
    sample u, and its prior p(u | child) = N(prior_mu, diag(exp(prior_logvar))), or None for N(0, I).
    mu, logvar are (B, D) for a layer conditioned on x, (K, B, D) for one conditioned on a sample."""
    name: str
    mu: Any
    logvar: Any
    sample: Any
    prior: Any = None


class LatentVariableModel:
    r"""What every minivae model shares: parameters by name, input checks, noise, the bound.

    A subclass builds its networks in ``__init__`` (then calls ``_finish_init``) and writes

        log_weight_terms(x, eps, analytic_kl) -> (log_px (K, B), log_latent (K, B) or (B,), cache)
        log_weight_backward(dlog_px (K, B), dlog_latent (log_latent's shape), cache) -> grads
        score_backward(dlog_q (K, B), cache) -> grads of sum dlog_q * log q(z|x) at z held fixed
        latent_layers(cache) -> [LatentLayer, ...], what the forward drew, layer by layer

    and ``encode``, ``decode``, ``sample``, ``latent_means``.  ``eps_dim`` is the width of the
    noise one sample needs; ``inference_networks`` names the networks of q.
    """

    output_layer: str = ""                    # name of the parameter holding the decoder's output bias
    inference_networks: tuple = ()

    def _setup(self, backend, seed, dtype, likelihood, sigma, activation):
        """Check the settings every model shares, then make the backend, dtype and likelihood;
        returns the host generator of the initial weights.  Each size is checked by the subclass."""
        seed = check_int("seed", seed, 0, "any integer from 0 up seeds the initial weights")
        self.dtype = check_float_dtype(dtype)
        check_choice("likelihood", likelihood, LIKELIHOODS)
        check_positive("sigma", sigma, "sigma is the Gaussian decoder's standard deviation, e.g. 1")
        check_choice("activation", activation, ACTIVATIONS)
        if not isinstance(backend, Backend):
            check_choice("backend", backend, BACKENDS)             # or a Backend made already
        self.backend = get_backend(backend, seed) if isinstance(backend, str) else backend
        self.xp = self.backend.xp
        self.likelihood = make_likelihood(likelihood, sigma)
        return np.random.default_rng(seed)

    def _finish_init(self, networks: dict):
        """Collect the networks' parameters as ``"<network>.<layer>.<W|b>"``."""
        self.networks = networks
        self.params = {f"{net}.{n}": p for net, mlp in networks.items() for n, p in mlp.params.items()}

    @staticmethod
    def _named(network: str, grads: dict) -> dict:
        return {f"{network}.{n}": g for n, g in grads.items()}

    # ------------------------------------------------------------ inputs and noise
    def check_x(self, x, cast: bool = True):
        """x as the model's dtype (as given, with ``cast=False``), or a clear error when it is not a
        non-empty (batch, x_dim) array of real numbers.  Shape and dtype only, no sync: the values
        are the likelihood's ``check_data``."""
        if getattr(x, "ndim", None) != 2 or x.shape[1] != self.x_dim:
            raise InvalidInput(f"x has shape {getattr(x, 'shape', type(x).__name__)} but the model "
                               f"expects (batch, {self.x_dim}): flatten images to rows of "
                               f"{self.x_dim} pixels.")
        if x.shape[0] == 0:
            raise InvalidInput(f"x is an empty batch (shape {x.shape}): pass at least one example.")
        if x.dtype.kind not in "biuf":
            raise InvalidInputType(f"x has dtype {x.dtype} but the model needs real numbers: "
                                   f"convert the data to floats first.")
        return x.astype(self.dtype, copy=False) if cast else x

    def check_z(self, z, name: str = "z"):
        """z as the model's dtype, or a clear error when it is not (..., latent_dim)."""
        if getattr(z, "ndim", 0) < 1 or z.shape[-1] != self.latent_dim:
            raise InvalidInput(f"{name} has shape {getattr(z, 'shape', type(z).__name__)} but the "
                               f"decoder expects (..., {self.latent_dim}) latent values.")
        return z.astype(self.dtype, copy=False)

    def check_eps(self, eps, k: int | None, batch: int):
        """eps as the model's dtype, or a clear error when it is not (k, batch, eps_dim); any K for
        ``k=None``."""
        K = getattr(eps, "shape", (None,))[0] if k is None else k
        if getattr(eps, "shape", None) != (K, batch, self.eps_dim):
            raise InvalidInput(f"eps has shape {getattr(eps, 'shape', None)} but k={K} samples "
                               f"of a batch of {batch} need ({K}, {batch}, {self.eps_dim}).")
        return eps.astype(self.dtype, copy=False)

    def _checked_inputs(self, x, k: int | None, eps, rng, check_data: bool):
        """(x, eps) for a forward: x's shape and dtype (and its values, by the likelihood's rule,
        when ``check_data``), and eps (k, B, eps_dim), drawn from ``rng`` when None (k known) or
        checked (any K for ``k=None``)."""
        x = self.check_x(x)
        if check_data:
            self.likelihood.check_data(x)
        if eps is None:
            return x, self.draw_eps(k, x.shape[0], rng)
        return x, self.check_eps(eps, k, x.shape[0])

    def draw_eps(self, k: int, batch: int, rng=None):
        """eps ~ N(0, I) of shape (k, batch, eps_dim) from ``rng`` (default: the backend's generator)."""
        rng = self.backend.rng if rng is None else rng
        return rng.standard_normal((k, batch, self.eps_dim), dtype=self.dtype)

    # ------------------------------------------------------------ parameters
    def load_params(self, arrays) -> None:
        """Copy ``arrays`` (name -> host or device array) into the parameters, in place."""
        missing = sorted(set(self.params) - set(arrays))
        extra = sorted(set(arrays) - set(self.params))
        if missing or extra:
            raise InvalidInput(f"Parameters do not match the model: missing {missing}, "
                               f"unexpected {extra}.")
        for name, p in self.params.items():
            a = arrays[name]
            if tuple(a.shape) != p.shape:
                raise InvalidInput(f"Parameter {name} has shape {tuple(a.shape)} but the model "
                                   f"needs {p.shape}: the architecture differs.")
            p[...] = self.xp.asarray(a, dtype=p.dtype)

    def init_output_bias(self, mean_x) -> None:
        """Start the decoder at the mean training image ``mean_x`` (P,): the likelihood says how
        (:meth:`minivae.likelihoods.Bernoulli.init_output_bias`: the logit of the mean pixel)."""
        self.likelihood.init_output_bias(self.params[self.output_layer],
                                         self.xp.asarray(mean_x, dtype=self.dtype))

    @property
    def n_params(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    # ------------------------------------------------------------ the bound: a reduction over K
    def forward(self, x, objective: str = "elbo", k: int = 1, beta: float = 1.0, eps=None, rng=None,
                *, check_data: bool = True):
        r"""The bound L(x_b) per example (B,), with everything backward needs.

            log w = log_px + beta * log_latent          (K, B)   the model's log_weight_terms
            L     = reduce_K(log w)                      (B,)     the objective's reduction

        ``eps`` (k, B, eps_dim) makes the call deterministic; otherwise it is drawn from ``rng``
        (default: the backend's generator).  Returns ``(bound, cache, stats)``; stats holds 0-d
        device arrays (no host sync): ``kl`` = -mean(log_latent), the closed-form KL or its
        Monte-Carlo estimate, and ``recon`` = -mean(log_px), over samples and batch.

        The arguments are checked first (host scalars and shapes: no sync), then the data by the
        likelihood's rule (``likelihood.check_data``: finite, and in [0, 1] for Bernoulli pixels),
        which reads x's minimum and maximum back from the device.  A training loop that checked its
        whole data set once passes ``check_data=False`` and skips that read on every step.
        """
        objective, k, beta = self.check_bound_arguments(objective, k, beta)
        x, eps = self._checked_inputs(x, k, eps, rng, check_data)
        return self._forward(x, eps, objective, beta)

    def _forward(self, x, eps, objective, beta: float):
        """:meth:`forward` on checked inputs: x (B, P), eps (K, B, eps_dim), the Objective."""
        log_px, log_latent, terms = self.log_weight_terms(x, eps, objective.analytic_kl)
        log_w = beta * log_latent
        log_w = log_w + log_px                                         # (K, B)
        bound, reduction = objective.forward(log_w)
        stats = {"kl": -log_latent.mean(), "recon": -log_px.mean()}
        cache = dict(objective=objective, beta=beta, latent_shape=log_latent.shape,
                     reduction=reduction, terms=terms)
        return bound, cache, stats

    @staticmethod
    def check_bound_arguments(objective, k, beta):
        """(the Objective, k, beta) for a bound, or one clear error for a bad value."""
        check_choice("objective", objective, OBJECTIVES)
        k = check_int("k", k, 1, "k counts importance samples per example, 1 for the ELBO")
        beta = check_real("beta", beta, 0.0, fix="beta weights the latent term: 1 for the ELBO, 0 "
                                                 "for reconstruction only")
        return get_objective(objective), k, beta

    def backward(self, dbound, cache):
        r"""Gradients of sum_b dbound_b L(x_b) for every parameter, the forward in reverse.

            dlog_w      = the reduction's backward          (K, B)   dbound / K, or w_tilde dbound
            dlog_px     = dlog_w                            (K, B)
            dlog_latent = beta * dlog_w, summed over K where the latent term is (B,) (closed form)
            grads       = the model's log_weight_backward(dlog_px, dlog_latent)
        """
        dlog_w = cache["objective"].backward(dbound, cache["reduction"])
        dlog_latent = G.sum_to(cache["beta"] * dlog_w, cache["latent_shape"])
        return self.log_weight_backward(dlog_w, dlog_latent, cache["terms"])

    def loss_and_grads(self, x, objective: str = "elbo", k: int = 1, beta: float = 1.0,
                       eps=None, rng=None, *, check_data: bool = True):
        r"""Loss = -(1/B) sum_b L(x_b) in nats per example, and dLoss/dparam for every parameter.

        Returns ``(loss, grads, stats)``; ``loss`` and the stats are 0-d arrays on the backend's
        device (read them with ``float()`` off the hot loop).  See :meth:`forward`, for
        ``check_data`` too.

        The examples are independent until the loss sums them, so a batch large enough is cut into
        shares, one per thread (:func:`minivae.parallel.over_shares`): share s runs the forward
        (checked once, for the whole batch) and :meth:`backward` on its rows with dbound = -1/B
        (the whole batch's B),
        and the shares' gradients add up to the batch's (:meth:`_add_shares`).  The noise is
        drawn for the whole batch first, so the result does not depend on the number of threads
        beyond the rounding of that sum.
        """
        objective, k, beta = self.check_bound_arguments(objective, k, beta)
        x, eps = self._checked_inputs(x, k, eps, rng, check_data)
        B = x.shape[0]

        def share(s):
            bound, cache, stats = self._forward(x[s], eps[:, s], objective, beta)
            dbound = self.xp.full(bound.shape[0], -1.0 / B, dtype=self.dtype)
            return -bound.sum() / B, self.backward(dbound, cache), stats, bound.shape[0]

        return self._add_shares(parallel.over_shares(share, B, B * self.share_values(k), like=x), B)

    def share_values(self, k: int) -> int:
        """About how many values one example's forward computes with k samples: k x_dim, the
        decoder's outputs, which dominate a dense model's element-wise work.  A batch goes in
        shares over threads where each share gets :data:`minivae.parallel.MIN_SHARE` of them."""
        return k * self.x_dim

    @staticmethod
    def _add_shares(parts, B: int):
        r"""(loss, grads, stats) of the whole batch from its shares' (loss_s, grads_s, stats_s, B_s):

            loss = sum_s loss_s,   grads = sum_s grads_s   (each share's loss and gradients are
                                   already its rows' part of -(1/B) sum_b L(x_b)),
            stats = sum_s (B_s / B) stats_s                 (means over the share's rows)

        One share is returned as it is; the first share's gradient arrays take the sum in place."""
        loss, grads, stats, _ = parts[0]
        if len(parts) == 1:
            return loss, grads, stats
        stats = {n: v * (parts[0][3] / B) for n, v in stats.items()}
        for loss_s, grads_s, stats_s, B_s in parts[1:]:
            loss = loss + loss_s
            for n, g in grads_s.items():
                grads[n] += g
            for n, v in stats_s.items():
                stats[n] = stats[n] + v * (B_s / B)
        return loss, grads, stats

    def estimator_loss_and_grads(self, x, estimator: str = "iwae", k: int = 1, m: int = 1,
                                 ciwae_beta: float = 0.5, eps=None, rng=None, *,
                                 check_data: bool = True):
        r"""Loss and gradients by one of the estimators after IWAE (:data:`minivae.objectives.ESTIMATORS`).

        Draws S = m k samples per example (eps (S, B, eps_dim); MIWAE and PIWAE read them as m groups
        of k), computes log w (S, B) with every latent term sampled, and the estimator's per-sample
        coefficients on the two paths, a (decoder) and c (encoder), (S, B).  With dbound = -1/B:

            generative networks   log_weight_backward(a dbound, a dbound)                 a = c: one pass
            inference networks    log_weight_backward(c dbound, c dbound, score=not path_only)

        A path-only estimator (STL, DReG) leaves out log q's score; the decoder's gradient does not
        see the score either way, so one backward serves both paths whenever a = c (all but DReG
        and PIWAE, which take a second pass).  Returns ``(loss, grads, stats)`` like
        :meth:`loss_and_grads`, with loss = -(1/B) sum_b of the estimator's bound (the IWAE bound
        L_S for iwae, stl, dreg and piwae; MIWAE's and CIWAE's own).
        """
        est = get_estimator(estimator)
        k = check_int("k", k, 1, "k counts importance samples per example (per group for MIWAE)")
        m = check_int("m", m, 1, "m counts groups of k samples (MIWAE, PIWAE)")
        ciwae_beta = check_real("ciwae_beta", ciwae_beta, 0.0, 1.0,
                                fix="CIWAE mixes beta ELBO + (1 - beta) IWAE, beta in [0, 1]")
        if m > 1 and not est.uses_m:
            raise InvalidInput(f"m={m} groups mean nothing to estimator {estimator!r}: only miwae "
                               f"and piwae read m (use m=1).")
        x, eps = self._checked_inputs(x, m * k, eps, rng, check_data)     # eps (S, B, eps_dim)
        B = x.shape[0]

        def share(s):                          # the batch's rows s, as in loss_and_grads
            log_px, log_latent, terms = self.log_weight_terms(x[s], eps[:, s], analytic_kl=False)
            log_w = log_px + log_latent                                   # (S, B_s)
            bound, a, c = est.coefficients(log_w, m, ciwae_beta)
            dbound = -1.0 / B
            a = a * dbound
            grads = self.log_weight_backward(a, a, terms, score=not est.path_only)
            if not est.same_paths:                                        # DReG, PIWAE
                c = c * dbound
                enc = self.log_weight_backward(c, c, terms, score=not est.path_only)
                grads.update({n: g for n, g in enc.items()
                              if n.split(".")[0] in self.inference_networks})
            stats = {"kl": -log_latent.mean(), "recon": -log_px.mean()}
            return -bound.sum() / B, grads, stats, bound.shape[0]

        return self._add_shares(parallel.over_shares(share, B, B * self.share_values(m * k),
                                                           like=x), B)

    def bound(self, x, objective: str = "elbo", k: int = 1, beta: float = 1.0, eps=None, rng=None,
              *, check_data: bool = True):
        """The bound per example (B,), in nats, without gradients (see :meth:`forward`); the
        examples in shares over threads, as in :meth:`loss_and_grads`."""
        objective, k, beta = self.check_bound_arguments(objective, k, beta)
        x, eps = self._checked_inputs(x, k, eps, rng, check_data)

        def share(s):
            return self._forward(x[s], eps[:, s], objective, beta)[0]

        parts = parallel.over_shares(share, x.shape[0], x.shape[0] * self.share_values(k), like=x)
        return parts[0] if len(parts) == 1 else self.xp.concatenate(parts)

    def log_weights(self, x, eps, *, check_data: bool = True):
        r"""log w = log p(x|z) + log p(z) - log q(z|x) for the noise eps (K, B, eps_dim): (K, B).

        Forward only, every latent term sampled (the importance weights of L_k).  ``check_data``
        as in :meth:`forward` (:func:`minivae.evaluate.log_likelihood` checks x once, up front).
        Every (k, b) is independent, so the work goes in shares over threads
        (:func:`minivae.parallel.over_shares`): of the examples where there are at least as many
        as threads, else of the samples (L_5000 takes one image and 5000 samples at a time)."""
        x, eps = self._checked_inputs(x, None, eps, None, check_data)
        K, B = eps.shape[:2]
        by_example = B >= parallel.threads()

        def share(s):
            xs, es = (x[s], eps[:, s]) if by_example else (x, eps[s])
            log_px, log_latent, _ = self.log_weight_terms(xs, es, False)
            log_px += log_latent
            return log_px

        parts = parallel.over_shares(share, B if by_example else K, B * self.share_values(K),
                                     like=x)
        return parts[0] if len(parts) == 1 else self.xp.concatenate(parts, axis=int(by_example))


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

    inference_networks = ("encoder",)

    def __init__(self, x_dim: int = 784, latent_dim: int = 50, encoder_hidden=(200, 200),
                 decoder_hidden=(200, 200), activation: str = "tanh",
                 likelihood: str = "bernoulli", sigma: float = 1.0, dtype: str = "float32",
                 seed: int = 0, backend: str | Backend = "numpy"):
        x_dim = check_int("x_dim", x_dim, 1, "x_dim counts pixels per example, e.g. 784")
        latent_dim = check_int("latent_dim", latent_dim, 1, "latent_dim counts latent units")
        encoder_hidden = check_sizes("encoder_hidden", encoder_hidden)
        decoder_hidden = check_sizes("decoder_hidden", decoder_hidden)
        rng = self._setup(backend, seed, dtype, likelihood, sigma, activation)
        self.config = dict(x_dim=x_dim, latent_dim=latent_dim, encoder_hidden=encoder_hidden,
                           decoder_hidden=decoder_hidden, activation=activation,
                           likelihood=likelihood, sigma=float(sigma), dtype=self.dtype.name,
                           seed=int(seed))
        self.x_dim, self.latent_dim = x_dim, latent_dim
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
        return G.split(self.encoder.forward(self.check_x(x))[0])

    def decode(self, z):
        """E[x | z], the mean of p(x | z): pixel probabilities for the Bernoulli decoder; z (..., D)
        gives (..., P)."""
        out, _ = self.decoder.forward(self.check_z(z))
        return self.likelihood.mean(out)

    def reconstruct(self, x):
        """decode(mu(x)): the decoder's mean at the encoder's mean."""
        return self.decode(self.encode(x)[0])

    def sample(self, n: int, rng=None):
        """n draws z ~ p(z) = N(0, I) decoded to E[x | z], (n, P)."""
        n = check_int("n", n, 1, "n counts the samples to draw")
        rng = self.backend.rng if rng is None else rng
        return self.decode(rng.standard_normal((n, self.latent_dim), dtype=self.dtype))

    def latent_means(self, x, rng=None):
        """[E_q(z|x)[z]] = [mu(x)], one (B, D) array per stochastic layer (for active units)."""
        return [self.encode(x)[0]]

    # ------------------------------------------------------------ log w, and its backward
    def log_weight_terms(self, x, eps, analytic_kl: bool = False):
        r"""The two terms of log w for x (B, P) and the noise eps (K, B, D).

            h          = encoder(x) = [mu, logvar]                               (B, 2D)
            z          = mu + exp(logvar / 2) eps                                (K, B, D)
            log_px     = log p(x | decoder(z))                                   (K, B)
            log_latent = log N(z; 0, I) - log N(z; mu, sigma^2)                  (K, B)
                       = -KL(N(mu, sigma^2) || N(0, I))   with ``analytic_kl``   (B,)

        Returns ``(log_px, log_latent, cache)``; the cache holds, besides what the backward needs,
        ``"mu"``, ``"logvar"`` and ``"z"`` for a reader of the latent layer.
        """
        h, enc = self.encoder.forward(x)                               # (B, 2D)
        mu, logvar = G.split(h)                                        # (B, D) each
        z, rep = G.reparameterize_forward(mu, logvar, eps)             # (K, B, D)
        out, dec = self.decoder.forward(z)                             # (K, B, O)
        log_px, lik = self.likelihood.forward(x, out)                  # (K, B)
        log_latent, latent = G.std_normal_log_ratio_forward(z, mu, logvar, analytic_kl)
        return log_px, log_latent, dict(enc=enc, rep=rep, dec=dec, lik=lik, latent=latent,
                                        mu=mu, logvar=logvar, z=z)

    def log_weight_backward(self, dlog_px, dlog_latent, cache, score: bool = True):
        r"""Gradients of sum dlog_px * log_px + sum dlog_latent * log_latent, the forward in reverse.

        ``score=False`` (STL, DReG) leaves out the score, log q(z|x)'s derivative in mu and logvar
        at fixed z in step 3, and keeps every path through z.

        1. likelihood:  dout (K, B, O) from dlog_px
        2. decoder:     dz (K, B, D), decoder grads
        3. latent term (:func:`minivae.gaussian.std_normal_log_ratio_backward`):
                        [closed form]  dmu = -dlog_latent mu,  dlogvar = -dlog_latent (sigma^2 - 1)/2
                        [sampled]      dz += -z dlog_latent               from  log p(z)
                                       dz += (z - mu)/sigma^2 dlog_latent  from -log q(z|x), and its
                                       dmu, dlogvar at fixed z
        4. reparam:     dmu += sum_K dz,  dlogvar += sum_K dz eps sigma / 2
        5. encoder:     dh = [dmu, dlogvar] (B, 2D) -> encoder grads (no dx: x is data)
        """
        dout = self.likelihood.backward(dlog_px, cache["lik"])          # (K, B, O)
        dz, dec_grads = self.decoder.backward(dout, cache["dec"])       # (K, B, D)
        dz_latent, dmu, dlogvar = G.std_normal_log_ratio_backward(dlog_latent, cache["latent"],
                                                                 score)
        if dz_latent is not None:                                       # sampled: through z too
            dz += dz_latent
        dmu_r, dlogvar_r = G.reparameterize_backward(dz, cache["rep"])  # (B, D) each
        if dmu is None:                                                 # path only: no score
            dmu, dlogvar = dmu_r, dlogvar_r
        else:
            dmu += dmu_r
            dlogvar += dlogvar_r
        _, enc_grads = self.encoder.backward(G.join(dmu, dlogvar), cache["enc"], need_dx=False)
        return {**self._named("encoder", enc_grads), **self._named("decoder", dec_grads)}

    def latent_layers(self, cache):
        """[z]: q(z|x) and its K samples, from a ``log_weight_terms`` cache; the prior is N(0, I)."""
        return [LatentLayer("z", cache["mu"], cache["logvar"], cache["z"])]

    def score_backward(self, dlog_q, cache):
        r"""Encoder gradients of sum_kb dlog_q_kb log q(z_kb | x_b) with every z held fixed.

        The score function grad_phi log q_phi(z|x): from log_normal_backward at fixed z,

            dmu = sum_K dlog_q (z - mu) / sigma^2,   dlogvar = sum_K dlog_q ((z - mu)^2 / sigma^2 - 1) / 2,

        and its dz is dropped: the path through the sample is the one this gradient does not take.
        Needs the cache of ``log_weight_terms(..., analytic_kl=False)``.  dlog_q (K, B).
        """
        _, q_cache = cache["latent"]                                    # log q(z|x)'s cache
        _, dmu, dlogvar = G.log_normal_backward(dlog_q, q_cache)         # (B, D) each
        _, grads = self.encoder.backward(G.join(dmu, dlogvar), cache["enc"], need_dx=False)
        return self._named("encoder", grads)
