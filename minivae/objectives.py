r"""The bounds on log p(x) that minivae trains on, with their gradients.

For one example x, latent z ~ q(z | x) and the importance weight

    w = p(x | z) p(z) / q(z | x),      log w = log p(x | z) + log p(z) - log q(z | x),

Jensen's inequality gives, for any k,

    log p(x) = log E_q[w] >= E[ log (1/k) sum_i w_i ] = L_k >= ... >= L_1 = E_q[log w] = ELBO

(Burda et al. 2016, Theorem 1).  Three objectives are implemented; each takes
per-example terms and returns the bound per example, in nats:

* ``elbo``: log p(x|z) averaged over K samples minus beta * KL(q || p) in closed form
  (Kingma & Welling 2013, eq. 10).
* ``mc_elbo``: the K-sample Monte-Carlo ELBO (1/K) sum_i log w_i, Burda's "VAE with k samples".
* ``iwae``: L_k = log (1/K) sum_i w_i, by a max-shifted log-sum-exp.

Axis legend: K samples, B batch.  All backwards take dL/dbound ``(B,)``.
"""
from __future__ import annotations

import math

from .backend import array_module

OBJECTIVES = ("elbo", "mc_elbo", "iwae")


def elbo_forward(log_px_z, kl, beta: float = 1.0):
    r"""ELBO with the analytic KL:  L = (1/K) sum_i log p(x | z_i) - beta KL(q(z|x) || p(z)).

    Shapes: log_px_z (K, B), kl (B,), result (B,).  beta = 1 is the ELBO; beta != 1 is the
    beta-VAE objective (Higgins et al. 2017).
    """
    K = log_px_z.shape[0]
    return log_px_z.mean(axis=0) - beta * kl, (K, beta)


def elbo_backward(dL, cache):
    r"""dlog_px_z = dL / K  (K, B) for every sample;   dkl = -beta dL  (B,).

    dlog_px_z is a read-only broadcast view (no copy): use it, don't update it in place.
    """
    K, beta = cache
    xp = array_module(dL)
    return xp.broadcast_to(dL / K, (K,) + dL.shape), -beta * dL


def mc_elbo_forward(log_w):
    r"""L = (1/K) sum_i log w_i.   log_w (K, B) -> (B,)."""
    return log_w.mean(axis=0), log_w.shape[0]


def mc_elbo_backward(dL, cache):
    r"""dlog w_i = dL / K for every i: each sample's gradient gets the same weight.   (K, B).

    A read-only broadcast view (no copy): use it, don't update it in place.
    """
    K = cache
    xp = array_module(dL)
    return xp.broadcast_to(dL / K, (K,) + dL.shape)


def iwae_forward(log_w):
    r"""L_k = log (1/K) sum_i w_i = m + log (1/K) sum_i exp(log w_i - m),  m = max_i log w_i.

    Shifting by the maximum keeps every exponent <= 0, so nothing overflows, and the
    largest term is exactly 1, so the sum is >= 1 and its log never underflows.

    log_w (K, B) -> (B,).  The cache keeps the normalised weights
    w_tilde_i = w_i / sum_j w_j = softmax_i(log w)  (K, B), which sum to one over K.
    """
    xp = array_module(log_w)
    K = log_w.shape[0]
    m = log_w.max(axis=0)                           # (B,)
    w = xp.exp(log_w - m)                           # (K, B), in (0, 1]
    s = w.sum(axis=0)                               # (B,), >= 1
    w /= s                                          # w_tilde
    return m + xp.log(s) - math.log(K), w


def iwae_backward(dL, cache):
    r"""dlog w_i = w_tilde_i dL   (K, B)   (Burda et al. 2016, section 3).

    From d/dlog w_i log sum_j exp(log w_j) = exp(log w_i) / sum_j exp(log w_j) = w_tilde_i;
    the model's backward then gives sum_i w_tilde_i grad log w_i.
    """
    w_tilde = cache
    return w_tilde * dL
