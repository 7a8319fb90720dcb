r"""The bounds on log p(x) that minivae trains on: each one a reduction of the log-weights over K.

For one example x, latent z ~ q(z | x) and the importance weight

    w = p(x | z) p(z) / q(z | x),      log w = log p(x | z) + log p(z) - log q(z | x),

Jensen's inequality gives, for any k,

    log p(x) = log E_q[w] >= E[ log (1/k) sum_i w_i ] = L_k >= ... >= L_1 = E_q[log w] = ELBO

(Burda et al. 2016, Theorem 1).  A model computes the K log-weights of each example (its
``log_weight_terms``); a bound reduces them over K.  Two reductions cover the three objectives:

    mean            L = (1/K) sum_i log w_i                    dlog w_i = dbound / K
    log-mean-exp    L = log (1/K) sum_i w_i                    dlog w_i = w_tilde_i dbound

and the table :data:`OBJECTIVES` says which one each objective uses, and whether the model writes
the latent part of log w in closed form:

    elbo      mean, with log p(z) - log q(z|x) replaced by -KL(q(z|x) || p(z)) in closed form
              (Kingma & Welling 2013, eq. 10): the same expectation, without its sampling noise
    mc_elbo   mean of the sampled log w: the K-sample Monte-Carlo ELBO, Burda's "VAE with k samples"
    iwae      log-mean-exp: L_k, whose gradient weights each sample by w_tilde = softmax_K(log w)

Axis legend: K samples, B batch.  Every backward takes dbound = dLoss/dL, ``(B,)``.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

from .backend import array_module


def log_mean_exp(log_w, normalised_weights: bool = False):
    r"""log (1/K) sum_i exp(log w_i) over axis 0, with the maximum shifted out.

        log (1/K) sum_i w_i = m + log sum_i exp(log w_i - m) - log K,     m = max_i log w_i

    Every exponent is <= 0, so nothing overflows, and the largest term is exactly 1, so the sum is
    >= 1 and its log never underflows.  log_w (K, ...) -> (...).  With ``normalised_weights``,
    also return w_tilde_i = w_i / sum_j w_j = softmax_i(log w)  (K, ...), which sum to one over K
    (else None).  The one log-mean-exp of minivae: the IWAE bound and the L_k estimate use it.
    """
    xp = array_module(log_w)
    m = log_w.max(axis=0)                           # (B,)
    w = log_w - m
    xp.exp(w, out=w)                                # (K, B), in (0, 1]
    s = w.sum(axis=0)                               # (B,), >= 1
    value = m + xp.log(s) - math.log(log_w.shape[0])
    if not normalised_weights:
        return value, None
    w /= s                                          # w_tilde
    return value, w


# ---------------------------------------------------------------- the two reductions

def mean_forward(log_w):
    r"""L = (1/K) sum_i log w_i.   log_w (K, B) -> (B,); the cache is K."""
    return log_w.mean(axis=0), log_w.shape[0]


def mean_backward(dbound, cache):
    r"""dlog w_i = dbound / K for every i: each sample's gradient gets the same weight.   (K, B).

    A read-only broadcast view (no copy): use it, don't update it in place.
    """
    K = cache
    xp = array_module(dbound)
    return xp.broadcast_to(dbound / K, (K,) + dbound.shape)


def iwae_forward(log_w):
    r"""L_k = log (1/K) sum_i w_i   (Burda et al. 2016, section 3), by :func:`log_mean_exp`.

    log_w (K, B) -> (B,).  The cache keeps the normalised weights w_tilde = softmax_K(log w) (K, B).
    """
    return log_mean_exp(log_w, normalised_weights=True)


def iwae_backward(dbound, cache):
    r"""dlog w_i = w_tilde_i dbound   (K, B)   (Burda et al. 2016, section 3).

    From d/dlog w_i log sum_j exp(log w_j) = exp(log w_i) / sum_j exp(log w_j) = w_tilde_i;
    the model's backward then gives sum_i w_tilde_i grad log w_i.
    """
    w_tilde = cache
    return w_tilde * dbound


# ---------------------------------------------------------------- the table

class Objective(NamedTuple):
    """A bound: whether the model writes the latent terms in closed form, and the reduction over K."""
    name: str
    analytic_kl: bool                    # log p(z) - log q(z|x) -> -KL(q || p) where a model can
    forward: Callable                    # log_w (K, B) -> (bound (B,), cache)
    backward: Callable                   # (dbound (B,), cache) -> dlog_w (K, B)


OBJECTIVES = {
    "elbo": Objective("elbo", True, mean_forward, mean_backward),
    "mc_elbo": Objective("mc_elbo", False, mean_forward, mean_backward),
    "iwae": Objective("iwae", False, iwae_forward, iwae_backward),
}


def _entry(table: dict, kind: str, name):
    """``table[name]``, or one clear error naming the choices."""
    try:
        return table[name]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown {kind} {name!r}: choose one of {', '.join(table)}.") from None


def get_objective(name: str) -> Objective:
    """The objective called ``name`` (one of :data:`OBJECTIVES`), or one clear error."""
    return _entry(OBJECTIVES, "objective", name)


# ---------------------------------------------------------------- gradient estimators beyond IWAE
#
# Every estimator below is written as per-sample coefficients on the two paths of the gradient.
# With log w (S, B) for S = M K samples per example, w_tilde = softmax over the samples of a group:
#
#   grad_theta (decoder)  =  sum_s a_s grad_theta log w_s
#   grad_phi   (encoder)  =  sum_s c_s grad_phi log w_s          (the total derivative through z)
#                         or sum_s c_s (d log w_s / d z_s)(d z_s / d phi)   (path only: STL, DReG)
#
# so one backward pass serves each path (minivae.model.LatentVariableModel.estimator_loss_and_grads).

def _group_weights(log_w, m: int):
    """(bound per group (M, B), w_tilde within each group (M, K, B)) for log_w (M K, B)."""
    S, B = log_w.shape
    groups = log_w.reshape(m, S // m, B)                             # (M, K, B)
    bounds, w_tilde = log_mean_exp(groups.transpose(1, 0, 2), normalised_weights=True)  # over K
    return bounds, w_tilde.transpose(1, 0, 2)                       # (M, B), (M, K, B)


def iwae_coefficients(log_w, m: int = 1, ciwae_beta: float = 0.0):
    r"""IWAE (Burda et al. 2016, section 3): a_s = c_s = w_tilde_s over all S samples.  Its bound L_S."""
    bound, w_tilde = log_mean_exp(log_w, normalised_weights=True)
    return bound, w_tilde, w_tilde


def stl_coefficients(log_w, m: int = 1, ciwae_beta: float = 0.0):
    r"""STL, "sticking the landing" (Roeder, Wu & Duvenaud 2017; for IWAE as in Tucker, Lawson, Gu &
    Maddison 2019): the IWAE weights on both paths, the encoder's by the path term only.

    The encoder gradient of L_S is sum_s w_tilde_s [ d log w_s/dz_s dz_s/dphi  -  d log q(z_s)/dphi ]
    (the second term: log q's dependence on phi other than through z, the score).  The score has
    mean zero under q, so dropping it leaves an unbiased ELBO gradient at S = 1, but for S > 1 its
    weight w_tilde_s depends on z_s and the dropped term no longer averages to zero: STL is biased
    for the IWAE gradient at S > 1.  Bound L_S; a_s = c_s = w_tilde_s; the encoder's path only.
    """
    return iwae_coefficients(log_w)


def dreg_coefficients(log_w, m: int = 1, ciwae_beta: float = 0.0):
    r"""DReG, doubly reparameterised gradients (Tucker, Lawson, Gu & Maddison 2019): decoder a_s = w_tilde_s (IWAE's), encoder
    c_s = w_tilde_s^2 on the path term only.

    Applying the reparameterisation trick a second time to the score term of the IWAE encoder
    gradient, E[ sum_s w_tilde_s d log q(z_s)/dphi ] = E[ sum_s w_tilde_s^2 ... ] rewritten as a
    path derivative, gives an unbiased estimator of the IWAE gradient whose encoder signal-to-noise
    ratio does not fall as S grows:  grad_phi L_S = E[ sum_s w_tilde_s^2 d log w_s/dz_s dz_s/dphi ].
    """
    bound, w_tilde = log_mean_exp(log_w, normalised_weights=True)
    return bound, w_tilde, w_tilde * w_tilde


def miwae_coefficients(log_w, m: int = 1, ciwae_beta: float = 0.0):
    r"""MIWAE(M, K) (Rainforth et al. 2018, "Tighter variational bounds are not necessarily better"): the mean of M independent IWAE bounds of K samples,
    L = (1/M) sum_m L_K^(m); a_s = c_s = w_tilde_s (within its group) / M."""
    bounds, w_tilde = _group_weights(log_w, m)
    c = (w_tilde / m).reshape(log_w.shape)
    return bounds.mean(axis=0), c, c


def piwae_coefficients(log_w, m: int = 1, ciwae_beta: float = 0.0):
    r"""PIWAE(M, K) (Rainforth et al. 2018): the decoder trains on the IWAE bound of all
    M K samples (a_s = w_tilde_s over M K), the encoder on MIWAE(M, K) (c_s = w_tilde_s within its
    group / M).  No single bound has both as its gradient; the bound reported is L_{MK}."""
    bound, w_all = log_mean_exp(log_w, normalised_weights=True)
    _, w_group = _group_weights(log_w, m)
    return bound, w_all, (w_group / m).reshape(log_w.shape)


def ciwae_coefficients(log_w, m: int = 1, ciwae_beta: float = 0.5):
    r"""CIWAE(beta) (Rainforth et al. 2018): beta ELBO_S + (1 - beta) L_S, a convex
    combination of the S-sample ELBO and the IWAE bound; a_s = c_s = beta / S + (1 - beta) w_tilde_s."""
    S = log_w.shape[0]
    iwae, w_tilde = log_mean_exp(log_w, normalised_weights=True)
    c = (1 - ciwae_beta) * w_tilde
    c += ciwae_beta / S
    return ciwae_beta * log_w.mean(axis=0) + (1 - ciwae_beta) * iwae, c, c


class Estimator(NamedTuple):
    """A gradient estimator: its coefficients on the two paths, and whether it drops the score."""
    name: str
    coefficients: Callable         # (log_w (M K, B), m, ciwae_beta) -> (bound (B,), a, c) (M K, B)
    path_only: bool                # the encoder's gradient by the path term alone (STL, DReG)
    uses_m: bool                   # M groups of K samples (MIWAE, PIWAE)
    same_paths: bool               # a = c: one backward pass serves both paths


ESTIMATORS = {
    "iwae": Estimator("iwae", iwae_coefficients, False, False, True),
    "stl": Estimator("stl", stl_coefficients, True, False, True),
    "dreg": Estimator("dreg", dreg_coefficients, True, False, False),
    "miwae": Estimator("miwae", miwae_coefficients, False, True, True),
    "piwae": Estimator("piwae", piwae_coefficients, False, True, False),
    "ciwae": Estimator("ciwae", ciwae_coefficients, False, False, True),
}


def get_estimator(name: str) -> Estimator:
    """The estimator called ``name`` (one of :data:`ESTIMATORS`), or one clear error."""
    return _entry(ESTIMATORS, "estimator", name)
