r"""The ELBO's encoder gradient, two ways: the score function and the reparameterisation trick.

For one example x, the encoder's parameters phi give q_phi(z | x) = N(mu, diag(exp(logvar))) and

    ELBO(phi) = E_q[ f(z) ],     f(z) = log p(x | z) + beta (log p(z) - log q_phi(z | x)).

phi appears twice: in the distribution the expectation is taken over, and inside f (through
log q).  Differentiating both places,

    grad_phi E_q[f] = E_q[ f(z) grad_phi log q_phi(z|x) ]  +  E_q[ grad_phi f(z) ]          (1)
                    = E_q[ f(z) grad_phi log q_phi(z|x) ]  -  beta E_q[ grad_phi log q_phi(z|x) ]
                    = E_q[ f(z) grad_phi log q_phi(z|x) ],                                       (2)

because the score has mean zero:  E_q[grad log q] = int grad q dz = grad int q dz = grad 1 = 0.
So the -log q inside f reaches the gradient only through the weight f(z) in (2).

* **Score function** (REINFORCE, Williams 1992; the likelihood-ratio estimator; the "naive"
  estimator of Kingma & Welling 2013, section 2.2, who note its very high variance): K draws
  z_i ~ q held fixed, no gradient through the sample, estimate (2) by

      g_SF = (1/K) sum_i (f(z_i) - b_i) grad_phi log q_phi(z_i | x).

  Any baseline b_i that does not depend on z_i leaves it unbiased, by the same zero-mean
  argument.  ``baseline="mean"`` uses the leave-one-out mean of the other samples' f,
  b_i = (1/(K-1)) sum_{j != i} f(z_j) (Kool et al. 2019; Mnih & Rezende 2016 for VIMCO): it is
  independent of z_i yet tracks the level of f, which is what makes the plain estimator noisy
  (f is about -150 nats per MNIST image, and every score gets multiplied by it).

* **Reparameterisation** (Kingma & Welling 2013, sections 2.3-2.4): write z = mu + sigma eps with
  eps ~ N(0, I), so E_q[f(z)] = E_eps[f(mu + sigma eps)] and the gradient moves inside:

      g_RP = (1/K) sum_i grad_phi f(mu_phi + sigma_phi eps_i),

  the encoder part of the K-sample Monte-Carlo ELBO's gradient (``model.loss_and_grads`` with
  objective ``"mc_elbo"``).  It uses grad_z f, which the score function never looks at.

Both are returned as gradients of the **loss** = -(1/B) sum_b ELBO(x_b), the convention of
:meth:`minivae.model.VAE.loss_and_grads`, restricted to the encoder's parameters
(``"encoder.0.W"``, ...).  Axis legend: K samples, B batch, P pixels, D latent units.
"""
from __future__ import annotations

import numpy as np

from .backend import array_module

BASELINES = (None, "mean")
ESTIMATORS = ("reparameterization", "score_function", "score_function_baseline")


def _checked(model, x, eps):
    x = model.check_x(x)
    return x, model.check_eps(eps, None, x.shape[0])


def _inference_part(model, grads):
    """The entries of ``grads`` that belong to q's networks (``"encoder.*"`` for a VAE)."""
    return {n: g for n, g in grads.items() if n.split(".")[0] in model.inference_networks}


# ---------------------------------------------------------------- score function

def score_function_forward(model, x, eps, beta: float = 1.0):
    r"""f(z_i) = log w_i for K fixed draws z_i = mu + sigma eps_i, and the model's forward cache.

        f = log p(x|z) + beta (log p(z) - log q(z|x))        (K, B)

    the model's own log-weight terms (:meth:`minivae.model.VAE.log_weight_terms`, every term
    sampled).  Its cache is what :meth:`~minivae.model.VAE.score_backward` needs: the derivative
    of log q in mu and logvar at the fixed z, and the encoder's.  x (B, P), eps (K, B, eps_dim).
    Returns ``(f, cache)``.
    """
    x, eps = _checked(model, x, eps)
    log_px, log_latent, cache = model.log_weight_terms(x, eps, analytic_kl=False)
    log_latent *= beta
    log_latent += log_px
    return log_latent, cache


def leave_one_out_advantage(f):
    r"""f_i - b_i with b_i = (1/(K-1)) sum_{j != i} f_j, the mean of the *other* samples.  (K, B)

    Written as  f_i - b_i = K / (K-1) (f_i - fbar),  fbar = (1/K) sum_j f_j,  which centres f
    before anything is subtracted (f is large and negative; the differences are small).
    Needs K >= 2: with one sample there is no other sample to form the baseline from.
    """
    K = f.shape[0]
    if K < 2:
        raise ValueError("The leave-one-out baseline needs at least 2 samples per example; "
                         "got K = 1 (use baseline=None).")
    a = f - f.mean(axis=0)
    a *= K / (K - 1)
    return a


def score_function_backward(model, f, cache, baseline: str | None = None):
    r"""g_SF for the loss -(1/B) sum_b ELBO_b: encoder gradients from f (K, B) and the cache.

    The estimate is the gradient of the surrogate  S = -(1/B) sum_b (1/K) sum_i a_ib log q(z_ib|x_b)
    in which the weights a = f - b and the samples z are constants:

        1. weights    a_ib = f_ib              (baseline None)                         (K, B)
                      a_ib = f_ib - mean_{j != i} f_jb       (baseline "mean")
        2. dlog q     dlogq_ib = -a_ib / (K B)                                          (K, B)
        3. the score  model.score_backward(dlogq): at fixed z,                         (B, D)
                      dmu = sum_i dlogq_i (z_i - mu) / sigma^2,
                      dlogvar = sum_i dlogq_i ((z_i - mu)^2 / sigma^2 - 1) / 2;
                      no dz (no gradient through the sample); then the encoder's backward

    Returns ``{"encoder.<i>.W": ..., "encoder.<i>.b": ...}`` with the parameters' shapes.
    """
    if baseline not in BASELINES:
        raise ValueError(f"Unknown baseline {baseline!r}: choose None or 'mean'.")
    K, B = f.shape
    a = f if baseline is None else leave_one_out_advantage(f)    # (K, B)
    dlogq = a * (-1.0 / (K * B))                                   # (K, B), a new array
    return model.score_backward(dlogq, cache)


def score_function_grads(model, x, eps, beta: float = 1.0, baseline: str | None = None):
    r"""The score-function estimate of d loss / d encoder parameters from K draws eps (K, B, D).

        g_SF = -(1/B) sum_b (1/K) sum_i (f(z_ib) - b_ib) grad_phi log q_phi(z_ib | x_b)

    with f = log p(x|z) + beta (log p(z) - log q(z|x)) and z = mu + sigma eps held fixed;
    ``baseline``: None (b = 0) or ``"mean"`` (leave-one-out mean, K >= 2).  Unbiased for the
    gradient of -(1/B) sum_b ELBO_b; see the module docstring for why.  x (B, P).
    """
    f, cache = score_function_forward(model, x, eps, beta)
    return score_function_backward(model, f, cache, baseline)


# ---------------------------------------------------------------- reparameterisation

def reparameterization_grads(model, x, eps, beta: float = 1.0):
    r"""The reparameterised estimate of d loss / d encoder parameters from K draws eps (K, B, D).

        g_RP = -(1/B) sum_b (1/K) sum_i grad_phi f(mu_phi(x_b) + sigma_phi(x_b) eps_ib)

    = the encoder entries of ``model.loss_and_grads(x, "mc_elbo", K, beta, eps=eps)``: the
    gradient flows through z into the decoder and the log-densities, then back to mu and logvar.
    """
    x, eps = _checked(model, x, eps)
    _, grads, _ = model.loss_and_grads(x, "mc_elbo", eps.shape[0], beta, eps=eps)
    return _inference_part(model, grads)


def gradient_estimates(model, x, eps, beta: float = 1.0) -> dict:
    r"""All three estimates from the same draws eps (K, B, D): ``{estimator: {name: grad}}``.

    ``"reparameterization"``, ``"score_function"`` and, for K >= 2,
    ``"score_function_baseline"``; the two score-function ones share one forward pass.
    """
    f, cache = score_function_forward(model, x, eps, beta)
    out = {"reparameterization": reparameterization_grads(model, x, eps, beta),
           "score_function": score_function_backward(model, f, cache)}
    if eps.shape[0] >= 2:
        out["score_function_baseline"] = score_function_backward(model, f, cache, "mean")
    return out


# ---------------------------------------------------------------- spread over repeated draws

def flatten(grads):
    """One vector (n,) of every entry of ``grads``, in the dict's order."""
    xp = array_module(*grads.values())
    return xp.concatenate([g.ravel() for g in grads.values()])


class RunningMoments:
    r"""Mean and variance across repeated estimates, entry by entry, in float64 (Welford 1962).

    After n updates with vectors g_1..g_n (each (n_entries,)):

        mean = (1/n) sum_r g_r,     var = 1/(n-1) sum_r (g_r - mean)^2        (n_entries,)

    updated one g at a time (delta = g - mean; mean += delta / n; m2 += delta (g - mean)),
    which never subtracts two large sums, and keeps two vectors instead of all n estimates.
    """

    def __init__(self):
        self.n, self.mean, self.m2 = 0, None, None

    def update(self, g):
        xp = array_module(g)
        g = g.astype(xp.float64)
        self.n += 1
        if self.mean is None:
            self.mean, self.m2 = g, xp.zeros_like(g)             # astype made a copy
            return
        delta = g - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (g - self.mean)

    @property
    def var(self):
        if self.n < 2:
            raise ValueError("A variance needs at least 2 estimates.")
        return self.m2 / (self.n - 1)


def estimator_moments(model, x, k: int, repeats: int, rng, beta: float = 1.0) -> dict:
    r"""``repeats`` independent estimates with k samples each, from every estimator, on batch x.

    Repeat r draws eps_r (k, B, D) from ``rng`` (the backend's generator) and feeds the same
    eps_r to all estimators (:func:`gradient_estimates`).  Returns
    ``{estimator: RunningMoments}`` over the flattened encoder gradient, on the device.
    """
    x = model.check_x(x)
    moments = {}
    for _ in range(repeats):
        eps = model.draw_eps(k, x.shape[0], rng)
        for name, grads in gradient_estimates(model, x, eps, beta).items():
            moments.setdefault(name, RunningMoments()).update(flatten(grads))
    return moments


def summarize_moments(m: RunningMoments) -> dict:
    r"""Host floats describing one estimator's spread over its repeats.

        total_variance = sum_j var_j          (the trace of the estimator's covariance)
        mean_variance  = total_variance / n_entries
        snr            = mean_j |mean_j| / sqrt(var_j)   over entries with var_j > 0

    The SNR of an entry whose true gradient is ~0 reads about sqrt(2 / (pi n)), not 0: |mean|
    of n noisy estimates is itself noise.
    """
    xp = array_module(m.mean)
    var = m.var
    ok = var > 0
    snr = (xp.abs(m.mean[ok]) / xp.sqrt(var[ok])).mean() if bool(ok.any()) else xp.zeros(())
    total = var.sum()
    return {"total_variance": float(total), "mean_variance": float(total) / var.size,
            "snr": float(snr), "repeats": m.n}


# ---------------------------------------------------------------- signal-to-noise ratio in k

SNR_ESTIMATORS = ("elbo", "iwae", "stl", "dreg")


def _estimator_grads(model, x, estimator: str, eps):
    """d loss / d parameters from the draws eps (k, B, eps_dim): ``"elbo"`` is the k-sample
    Monte-Carlo ELBO (``loss_and_grads(x, "mc_elbo", k)``), any other name an estimator of
    :data:`minivae.objectives.ESTIMATORS` (``estimator_loss_and_grads``); x checked already."""
    k = eps.shape[0]
    if estimator == "elbo":
        return model.loss_and_grads(x, "mc_elbo", k, eps=eps, check_data=False)[1]
    return model.estimator_loss_and_grads(x, estimator, k, eps=eps, check_data=False)[1]


def gradient_snr(model, x, estimator: str, k: int, repeats: int, rng) -> dict:
    r"""The signal-to-noise ratio of ``estimator``'s gradient, encoder and decoder apart, at k.

    Repeat r = 1..R draws eps_r (k, B, eps_dim) from ``rng`` and computes the estimate
    g_r = d loss / d theta of the loss -(1/B) sum_b L(x_b) on the fixed batch x (B, P):

        "elbo"  (1/k) sum_i grad log w_i                         (the k-sample ELBO)
        "iwae"  sum_i w_tilde_i grad log w_i                     (Burda et al. 2016)
        "stl"   encoder: sum_i w_tilde_i   (path term of grad log w_i)   (Roeder et al. 2017)
        "dreg"  encoder: sum_i w_tilde_i^2 (path term of grad log w_i)   (Tucker et al. 2019)
                decoder, both: IWAE's.  The path term is grad log w_i through z_i alone: log q's
                score (its dependence on the encoder other than through z) left out.

    For every parameter entry j, over the R estimates (:class:`RunningMoments`, float64):

        mean_j = (1/R) sum_r g_rj,     std_j = sqrt( 1/(R-1) sum_r (g_rj - mean_j)^2 )
        SNR_j  = |mean_j| / std_j

    Rainforth et al. (2018, "Tighter variational bounds are not necessarily better")
    define SNR(theta) = |E[Delta(theta)]| / sigma[Delta(theta)] for each parameter entry of the
    gradient estimate Delta, and show that for IWAE the inference network's SNR falls like
    O(1/sqrt(k)) (its expected gradient shrinks like 1/k while its noise shrinks like 1/sqrt(k))
    and the generative network's rises like O(sqrt(k)); Tucker et al. (2019) show DReG's encoder
    SNR does not fall.  Here each group's SNR is summarised, as in :func:`summarize_moments`,
    by the mean over its entries of SNR_j (entries with std_j = 0 left out).  An entry whose true
    gradient is 0 still reads about sqrt(2 / (pi R)), so that is the floor of what R repeats show.

    The groups: ``"encoder"``, the parameters of ``model.inference_networks`` (names
    "<network>.<layer>.<W|b>"), and ``"decoder"``, all the others.  One estimate per repeat (a
    batch, no loop over examples); the arrays stay on the device until the summary at the end.
    Returns ``{"encoder": summary, "decoder": summary}``, each :func:`summarize_moments`' dict
    plus ``abs_mean`` = mean_j |mean_j|, ``std`` = mean_j std_j and ``entries``.
    """
    if estimator not in SNR_ESTIMATORS:
        raise ValueError(f"Unknown estimator {estimator!r} for the SNR: choose one of "
                         f"{', '.join(SNR_ESTIMATORS)}.")
    if repeats < 2:
        raise ValueError(f"repeats={repeats}: a standard deviation needs at least 2 estimates.")
    x = model.check_x(x)
    model.likelihood.check_data(x)                    # once, not in the loop (it reads x back)
    moments = {"encoder": RunningMoments(), "decoder": RunningMoments()}
    for _ in range(repeats):
        grads = _estimator_grads(model, x, estimator, model.draw_eps(k, x.shape[0], rng))
        encoder = _inference_part(model, grads)
        decoder = {n: g for n, g in grads.items() if n not in encoder}
        moments["encoder"].update(flatten(encoder))
        moments["decoder"].update(flatten(decoder))
    return {group: summarize_snr(m) for group, m in moments.items()}


def summarize_snr(m: RunningMoments) -> dict:
    """:func:`summarize_moments` with the two halves of the SNR: ``abs_mean`` = mean_j |mean_j|
    (the signal) and ``std`` = mean_j std_j (the noise), and the number of ``entries``."""
    xp = array_module(m.mean)
    return {**summarize_moments(m), "abs_mean": float(xp.abs(m.mean).mean()),
            "std": float(xp.sqrt(m.var).mean()), "entries": int(m.mean.size)}


def log_log_slope(ks, values) -> float:
    r"""The least-squares slope s of log(values) = s log(k) + c: values ~ k^s.  Host floats.

    Needs two distinct k and positive values (an SNR of 0 has no logarithm: nan)."""
    ks, values = np.asarray(ks, dtype=float), np.asarray(values, dtype=float)
    if len(set(ks.tolist())) < 2 or not (values > 0).all():
        return float("nan")
    return float(np.polyfit(np.log(ks), np.log(values), 1)[0])
