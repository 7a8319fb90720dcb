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
    r"""L_k = log (1/K) sum_i w_i   (Burda et al. 2016, eq. 8), by :func:`log_mean_exp`.

    log_w (K, B) -> (B,).  The cache keeps the normalised weights w_tilde = softmax_K(log w) (K, B).
    """
    return log_mean_exp(log_w, normalised_weights=True)


def iwae_backward(dbound, cache):
    r"""dlog w_i = w_tilde_i dbound   (K, B)   (Burda et al. 2016, eq. 13).

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


def get_objective(name: str) -> Objective:
    """The objective called ``name`` (one of :data:`OBJECTIVES`), or one clear error."""
    try:
        return OBJECTIVES[name]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown objective {name!r}: choose one of "
                         f"{', '.join(OBJECTIVES)}.") from None
