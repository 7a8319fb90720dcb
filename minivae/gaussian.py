r"""The diagonal Gaussian: reparameterised sampling, the closed-form KL to N(0, I), log-densities.

The encoder outputs the mean ``mu`` and the log-variance ``logvar = log sigma^2`` of
q(z | x) = N(z; mu, diag(sigma^2)).  Axis legend: K importance samples, B batch,
D latent units.  ``mu`` and ``logvar`` are ``(B, D)``; ``eps`` and ``z`` are
``(B, D)`` for one sample or ``(K, B, D)`` for K samples per example.

Kingma & Welling (2013), section 2.4 and appendix B; Burda et al. (2016), section 3.
"""
from __future__ import annotations

import math

from .backend import array_module

LOG_2PI = math.log(2.0 * math.pi)


def _sum_to(a, shape):
    """Sum ``a`` over its leading axes so that it has ``shape`` (folds the K axis back)."""
    while a.ndim > len(shape):
        a = a.sum(axis=0)
    return a


# ---------------------------------------------------------------- reparameterisation

def reparameterize_forward(mu, logvar, eps):
    r"""z = mu + sigma * eps with sigma = exp(logvar / 2)   (Kingma & Welling 2013, eq. 10).

    ``eps ~ N(0, I)`` is drawn by the caller and passed in, so the map is
    deterministic and its gradient checkable.  Shapes: mu, logvar (B, D);
    eps (B, D) or (K, B, D); z has eps's shape.

    Returns ``(z, cache)`` with cache = (eps, sigma).
    """
    xp = array_module(mu)
    sigma = xp.exp(0.5 * logvar)                    # (B, D)
    z = sigma * eps                                 # (K, B, D)
    z += mu
    return z, (eps, sigma)


def reparameterize_backward(dz, cache):
    r"""Gradients of L(z) through z = mu + sigma * eps, summed over the K samples.

        dmu     = sum_K dz                             (B, D)    dz/dmu = 1
        dlogvar = sum_K dz * eps * sigma / 2           (B, D)    dz/dlogvar = eps * sigma / 2
    """
    eps, sigma = cache
    dmu = _sum_to(dz, sigma.shape)
    if dmu is dz:                                   # no K axis to fold: never hand back dz itself
        dmu = dz.copy()
    dlogvar = _sum_to(dz * eps, sigma.shape)
    dlogvar *= 0.5 * sigma
    return dmu, dlogvar


# ---------------------------------------------------------------- KL(q || p)

def kl_normal_std_forward(mu, logvar):
    r"""KL(N(mu, sigma^2) || N(0, I)) per example, in nats   (Kingma & Welling 2013, appendix B).

        KL = 1/2 sum_d ( sigma_d^2 + mu_d^2 - 1 - log sigma_d^2 )        (B,)

    Returns ``(kl, cache)``; shapes mu, logvar (B, D), kl (B,).
    """
    xp = array_module(mu)
    var = xp.exp(logvar)
    kl = 0.5 * (var + mu * mu - 1 - logvar).sum(axis=-1)
    return kl, (mu, var)


def kl_normal_std_backward(dkl, cache):
    r"""dmu = dkl * mu;   dlogvar = dkl * (exp(logvar) - 1) / 2.   dkl (B,), both outputs (B, D)."""
    mu, var = cache
    d = dkl[..., None]
    return d * mu, d * (0.5 * (var - 1))


# ---------------------------------------------------------------- log-densities

def log_normal_forward(z, mu, logvar):
    r"""log N(z; mu, diag(exp(logvar))), summed over the latent units.

        log q = -1/2 sum_d ( log 2 pi + logvar_d + (z_d - mu_d)^2 exp(-logvar_d) )

    Shapes: z (K, B, D) or (B, D); mu, logvar (B, D) (broadcast over K); result z.shape[:-1].
    Returns ``(logp, cache)`` with cache = (z - mu, exp(-logvar), mu.shape).
    """
    xp = array_module(z)
    diff = z - mu                                   # (K, B, D)
    inv_var = xp.exp(-logvar)                       # (B, D)
    sq = diff * diff
    sq *= inv_var
    logp = -0.5 * (sq.sum(axis=-1) + (logvar.sum(axis=-1) + LOG_2PI * z.shape[-1]))
    return logp, (diff, inv_var, mu.shape)


def log_normal_backward(dlogp, cache):
    r"""Gradients of log N(z; mu, sigma^2) with respect to z, mu and logvar.

    With u = (z - mu) / sigma^2 and dlogp (K, B):

        dz      = -dlogp * u                                  (K, B, D)
        dmu     = sum_K dlogp * u                             (B, D)
        dlogvar = sum_K dlogp * ((z - mu)^2 / sigma^2 - 1) / 2   (B, D)
    """
    diff, inv_var, mu_shape = cache
    d = dlogp[..., None]
    u = diff * inv_var                              # (z - mu) / sigma^2
    du = d * u
    dmu = _sum_to(du, mu_shape)
    dlogvar = _sum_to(0.5 * (du * diff - d), mu_shape)
    return -du, dmu, dlogvar


def log_std_normal_forward(z):
    r"""log N(z; 0, I) = -1/2 sum_d (log 2 pi + z_d^2).   z (..., D) -> (...,)."""
    logp = -0.5 * ((z * z).sum(axis=-1) + LOG_2PI * z.shape[-1])
    return logp, z


def log_std_normal_backward(dlogp, cache):
    r"""dz = -dlogp * z.   dlogp (...,) -> dz (..., D)."""
    z = cache
    return -dlogp[..., None] * z
