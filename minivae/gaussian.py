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


def sum_to(a, shape):
    """Sum ``a`` over its leading axes so that it has ``shape`` (folds the K axis back)."""
    while a.ndim > len(shape):
        a = a.sum(axis=0)
    return a


# ---------------------------------------------------------------- a network's output as a Gaussian

def split(h):
    r"""(mu, logvar) from a network output h = [mu, logvar]:  h (..., 2D) -> two views (..., D)."""
    D = h.shape[-1] // 2
    return h[..., :D], h[..., D:]


def join(dmu, dlogvar):
    r"""dh = [dmu, dlogvar]  (..., 2D): the backward of :func:`split`."""
    xp = array_module(dmu)
    return xp.concatenate([dmu, dlogvar], axis=-1)


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
    dmu = sum_to(dz, sigma.shape)
    if dmu is dz:                                   # no K axis to fold: never hand back dz itself
        dmu = dz.copy()
    dlogvar = sum_to(dz * eps, sigma.shape)
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
    dmu = sum_to(du, mu_shape)
    dlogvar = sum_to(0.5 * (du * diff - d), mu_shape)
    return -du, dmu, dlogvar


def log_std_normal_forward(z):
    r"""log N(z; 0, I) = -1/2 sum_d (log 2 pi + z_d^2).   z (..., D) -> (...,)."""
    logp = -0.5 * ((z * z).sum(axis=-1) + LOG_2PI * z.shape[-1])
    return logp, z


def log_std_normal_backward(dlogp, cache):
    r"""dz = -dlogp * z.   dlogp (...,) -> dz (..., D)."""
    z = cache
    return -dlogp[..., None] * z


# ---------------------------------------------------------------- a latent layer against N(0, I)

def std_normal_log_ratio_forward(z, mu, logvar, closed_form: bool = False):
    r"""The latent term of a layer with prior N(0, I) and posterior q = N(mu, sigma^2):

        sampled      log N(z; 0, I) - log N(z; mu, sigma^2)            z (K, B, D) -> (K, B)
        closed_form  its expectation under q, -KL(q || N(0, I))       mu (..., D) -> (...)

    (the same expectation; the closed form has no sampling noise).  Returns ``(ratio, cache)``.
    """
    if closed_form:
        kl, kl_cache = kl_normal_std_forward(mu, logvar)
        return -kl, (kl_cache,)
    log_p, p_cache = log_std_normal_forward(z)
    log_q, q_cache = log_normal_forward(z, mu, logvar)
    log_p -= log_q
    return log_p, (p_cache, q_cache)


def std_normal_log_ratio_backward(dratio, cache, score: bool = True):
    r"""(dz, dmu, dlogvar) of :func:`std_normal_log_ratio_forward`; dz is None in closed form.

        closed_form  dmu = -dratio mu,   dlogvar = -dratio (sigma^2 - 1) / 2
        sampled      dz = -dratio z  +  dratio (z - mu) / sigma^2    (log p, then -log q at z);
                     dmu, dlogvar = the backward of -log q at fixed z, summed over K: the score

    ``score=False`` (sampled only) leaves the score out, dmu = dlogvar = None: log q's dependence
    on mu and logvar other than through z is a path this gradient does not take (STL, DReG).
    """
    if len(cache) == 1:
        if not score:
            raise ValueError("The closed-form KL has no sample to differentiate through: a "
                             "path-only gradient (score=False) needs the sampled latent term.")
        dmu, dlogvar = kl_normal_std_backward(-dratio, cache[0])
        return None, dmu, dlogvar
    p_cache, q_cache = cache
    dz = log_std_normal_backward(dratio, p_cache)
    dz_q, dmu, dlogvar = log_normal_backward(-dratio, q_cache)
    dz += dz_q
    return (dz, dmu, dlogvar) if score else (dz, None, None)
