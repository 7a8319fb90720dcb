r"""Looking inside a trained VAE: KL per latent unit, attribute vectors, stroke thickness, paths in z.

Helpers shared by the teaching examples (``examples/beta_vae.py``, ``examples/gaussian_decoder.py``,
``examples/latent_arithmetic.py``) and a command that describes each stochastic layer of a
checkpoint unit by unit (:func:`unit_statistics`):

    python -m minivae.analysis runs/campaign/iwae-2-50/checkpoint.npz --n 1000

Axis legend: N examples, B batch, P pixels, D latent units, K draws of the latent units, S steps
along a path.  The array module follows the model or the arrays (NumPy or CuPy); results that are
summaries for printing (:func:`kl_per_dimension`, :func:`unit_statistics`) come back as host NumPy
arrays, latent vectors (:func:`attribute_vector`, :func:`interpolate`) stay on the model's device.

    kl_per_dimension(model, x)          E_x KL(q(z_d|x) || N(0, 1)) for each unit d        (D,) host
    unit_statistics(model, x)           KL, Cov_x E_q[u], E_x Var_q u, per layer and unit  (D_l,) host
    describe_units(stats)               one line per layer: active units, KL, share of spread
    mean_encoding(model, x)             E_x mu(x), the mean of the encoder means             (D,)
    attribute_vector(model, x_a, x_b)   E_{x_a} mu - E_{x_b} mu                             (D,)
    decode_along(model, x, v, weights)  decode(mu(x) + w v) for every input and weight   (R, W, P)
    stroke_thickness(x)                 2 * ink / total variation, a stroke width in pixels  (N,)
    quantile_split(values, q, groups)   the top and bottom q of values, within each group
    interpolate(z_a, z_b, steps)        linear or spherical paths from z_a to z_b          (..., S, D)
    sigma_for_r_loss_factor(r, P)       the fixed decoder sigma that a weighted squared error means
    dequantize(x, rng)                  grey levels k/255 -> (k + u)/256, u ~ U[0, 1)
    bits_per_pixel(nelbo, P)            -ELBO on dequantised grey levels, in bits per pixel
"""
from __future__ import annotations

import math
import sys

import numpy as np

from . import gaussian as G
from .backend import array_module, to_host


# ---------------------------------------------------------------- the encoder, summarised

def _encoded_batches(model, x, batch_size: int):
    """Yield (mu, logvar), each (b, D) on the model's device, ``batch_size`` rows of x at a time."""
    if x.shape[0] == 0:
        raise ValueError("x has no rows: pass at least one example.")
    for start in range(0, x.shape[0], batch_size):
        xb = model.xp.asarray(x[start:start + batch_size], dtype=model.dtype)
        yield model.encode(xb)


def kl_per_dimension(model, x, batch_size: int = 1000) -> np.ndarray:
    r"""The closed-form KL of each latent unit, averaged over the data:  (D,) host float64, nats.

    For a VAE with one stochastic layer and the prior N(0, I) (:class:`minivae.VAE`).

        KL_d = (1/N) sum_n 1/2 ( sigma_nd^2 + mu_nd^2 - 1 - log sigma_nd^2 )

    q(z|x) is diagonal, so KL(q || N(0, I)) is the sum over units of these one-dimensional KLs and
    ``kl_per_dimension(model, x).sum()`` is the mean KL term of the ELBO.  Each unit is handed to
    :func:`minivae.gaussian.kl_normal_std_forward` as a Gaussian of dimension one (a trailing
    axis of length 1), so the formula is the library's own.  A unit the model does not use has
    q(z_d|x) = N(0, 1) for every x and KL_d = 0: beta > 1 pushes units there.
    """
    xp = model.xp
    total = xp.zeros(model.latent_dim, dtype=xp.float64)                   # (D,)
    for mu, logvar in _encoded_batches(model, x, batch_size):
        kl, _ = G.kl_normal_std_forward(mu[..., None], logvar[..., None])  # (b, D): one KL per unit
        total += kl.astype(xp.float64).sum(axis=0)
    return to_host(total / x.shape[0])


def mean_encoding(model, x, batch_size: int = 1000):
    r"""(1/N) sum_n mu(x_n), the mean of the encoder means: (D,) on the model's device, its dtype."""
    xp = model.xp
    total = xp.zeros(model.latent_dim, dtype=xp.float64)
    for mu, _ in _encoded_batches(model, x, batch_size):
        total += mu.astype(xp.float64).sum(axis=0)
    return (total / x.shape[0]).astype(model.dtype)


def attribute_vector(model, x_a, x_b, batch_size: int = 1000):
    r"""The direction in z from group b to group a:  v = mean_a mu(x) - mean_b mu(x),  (D,).

    Adding w v to the encoder mean of an input and decoding moves it towards "more a" for w > 0
    and towards "more b" for w < 0 (White 2016, "Sampling Generative Networks", section 2.3;
    the "smile vector").  Two identical groups give v = 0.  On the model's device, model dtype.
    """
    return mean_encoding(model, x_a, batch_size) - mean_encoding(model, x_b, batch_size)


def decode_along(model, x, v, weights):
    r"""decode(mu(x) + w v) for every input x and weight w:  (R, W, P) on the model's device.

    x (R, P) inputs, v (D,) a direction in z (e.g. :func:`attribute_vector`), weights (W,) host
    numbers; w = 0 is the reconstruction from the encoder mean.
    """
    be = model.backend
    mu, _ = model.encode(be.asarray(x, model.dtype))                                 # (R, D)
    w = be.asarray(weights, model.dtype)[None, :, None]                              # (1, W, 1)
    z = mu[:, None, :] + w * v                                                       # (R, W, D)
    return model.decode(z.reshape(-1, model.latent_dim)).reshape(len(x), len(weights), -1)


# ---------------------------------------------------------------- stochastic layers, unit by unit

def unit_statistics(model, x, n_samples: int = 10, rng=None, batch_size: int = 500) -> list:
    r"""Three numbers for every latent unit u, one dict of host float64 arrays per stochastic layer:

        "kl"        u's share of the ELBO's KL term, nats, averaged over the N rows of x    (D_l,)
        "mean_var"  Cov_x(E_q[u]): how far u's posterior mean moves with x (the active-unit
                    statistic, :func:`minivae.evaluate.latent_mean_variances`)             (D_l,)
        "post_var"  E_x Var_q(u): how widely u spreads for a fixed x                       (D_l,)

    The layers are what the model's own forward draws (``model.log_weight_terms`` with the KL in
    closed form where the prior is N(0, I), then ``model.latent_layers``), K = ``n_samples`` draws
    per row of x.  Every density is diagonal, so the KL term of the ELBO is a sum over units:

        prior N(0, I)   kl[d] = E_q[ KL(q(u_d | parent) || N(0, 1)) ]    closed form in u_d (over the
                        K draws of the parent where it is a sample: h2 given h1)
        prior p(u|...)  kl[d] = E_q[ log q(u_d | x) - log p(u_d | child) ]    Monte Carlo over the K
                        draws (h1, whose prior p(h1|h2) depends on the sampled h2)

    For one stochastic layer (:class:`minivae.VAE`) that is :func:`kl_per_dimension`.  For two
    (:class:`minivae.TwoLayerVAE`) and the same noise (one batch, the same rng), sum(kl_h1) +
    sum(kl_h2) is exactly the KL that ``model.forward(x, "elbo", k=K)`` reports.  A unit of h1 that
    p(h1|h2) predicts carries little KL however far its mean moves with x: its information is
    already counted in h2.  One h1 unit's share can come out slightly below 0, since h2 is drawn
    given h1 and p(h1_d|h2) may fit h1_d better than q(h1_d|x) does; only the sum over both layers
    is a KL, KL(q(h1, h2|x) || p(h1, h2)), and so at least 0.

    post_var: E_x sigma^2 for a layer conditioned on x; for one conditioned on a sample (h2), by the
    law of total variance over the K draws of its parent, E_x [ mean_k sigma_k^2 + var_k mu_k ]
    (so K >= 2).  The noise is eps = ``model.draw_eps(K, b, rng)`` per batch of b rows; rng
    defaults to ``model.backend.generator("unit_statistics")``.  mean_var comes from its own pass,
    the one the active-unit count of :mod:`minivae.evaluate` uses, so the two always agree.

    The ratio mean_var / (mean_var + post_var) does not change when a layer is rescaled (scaling h1
    by c, with p(h1|h2) and the first layers of the networks that read h1, the decoder's and
    q(h2|h1)'s, leaves every log w alone: the Jacobian term -D1 log c enters both log q(h1|x) and
    log p(h1|h2) and cancels); the 1e-2 threshold on mean_var alone does.
    """
    from .evaluate import latent_mean_variances

    if x.shape[0] == 0:
        raise ValueError("x has no rows: pass at least one example.")
    xp = model.xp
    rng = model.backend.generator("unit_statistics") if rng is None else rng
    K, sums = n_samples, None
    for start in range(0, x.shape[0], batch_size):
        xb = xp.asarray(x[start:start + batch_size], dtype=model.dtype)
        _, _, cache = model.log_weight_terms(xb, model.draw_eps(K, xb.shape[0], rng), True)
        layers = model.latent_layers(cache)
        sums = sums or [{"kl": 0.0, "post_var": 0.0} for _ in layers]
        for layer, total in zip(layers, sums):
            kl, post_var = _unit_kl_and_spread(layer, K)
            total["kl"] = total["kl"] + kl
            total["post_var"] = total["post_var"] + post_var
    n = x.shape[0]
    mean_vars = latent_mean_variances(model, x, batch_size)
    return [{"kl": to_host(t["kl"] / n), "mean_var": v, "post_var": to_host(t["post_var"] / n)}
            for t, v in zip(sums, mean_vars)]


def _unit_kl_and_spread(layer, K: int):
    r"""Sums over a batch of one layer's KL share and posterior variance per unit, (D,) float64.

    A trailing axis of length 1 makes each unit a Gaussian of its own for the library's densities.
    """
    xp, f64 = array_module(layer.mu), array_module(layer.mu).float64
    mu, logvar = layer.mu[..., None], layer.logvar[..., None]                 # (..., D, 1)
    if layer.prior is None:
        kl, _ = G.kl_normal_std_forward(mu, logvar)                          # closed form
    else:                                                                    # Monte Carlo
        z, (mu_p, logvar_p) = layer.sample[..., None], layer.prior
        log_q, _ = G.log_normal_forward(z, mu, logvar)
        log_p, _ = G.log_normal_forward(z, mu_p[..., None], logvar_p[..., None])
        kl = log_q - log_p                                                   # (K, B, D)
    per_draw = K if kl.ndim == 3 else 1
    kl = kl.astype(f64).sum(axis=tuple(range(kl.ndim - 1))) / per_draw
    if layer.mu.ndim == 2:                                                   # conditioned on x
        return kl, xp.exp(layer.logvar).astype(f64).sum(axis=0)
    if K < 2:
        raise ValueError(f"n_samples must be at least 2 (a layer drawn given a sample spreads "
                         f"over the draws of its parent, a variance), got {K}.")
    within = xp.exp(layer.logvar).astype(f64).mean(axis=0)                   # (B, D)
    between = layer.mu.astype(f64).var(axis=0)
    return kl, (within + between).sum(axis=0)


def layer_names(n_layers: int) -> list:
    """["z"] for one stochastic layer, ["h1", "h2", ...] for several (Burda et al.'s names)."""
    return ["z"] if n_layers == 1 else [f"h{l + 1}" for l in range(n_layers)]


def describe_units(stats, threshold: float = 1e-2, kl_min: float = 0.1,
                   share_min: float = 0.01) -> str:
    r"""One line per stochastic layer summarising :func:`unit_statistics`, e.g.

        h1 (100 units): 98 active (Cov_x E_q[u] > 0.01); 21 carry > 0.1 nats of KL (13.06 in all);
        97 have Cov_x E_q[u] / (Cov_x E_q[u] + E_x Var_q u) > 0.01; median posterior sd 1.46

    (the two-layer campaign at pass 392, first 1,000 test images; a one-layer model's layer is "z").
    """
    lines = []
    for name, s in zip(layer_names(len(stats)), stats):
        share = s["mean_var"] / (s["mean_var"] + s["post_var"])
        lines.append(
            f"{name} ({len(s['kl'])} units): {int((s['mean_var'] > threshold).sum())} active "
            f"(Cov_x E_q[u] > {threshold:g}); {int((s['kl'] > kl_min).sum())} carry > {kl_min:g} "
            f"nats of KL ({s['kl'].sum():.2f} in all); {int((share > share_min).sum())} have "
            f"Cov_x E_q[u] / (Cov_x E_q[u] + E_x Var_q u) > {share_min:g}; "
            f"median posterior sd {float(np.median(np.sqrt(s['post_var']))):.2f}")
    return "\n".join(lines)


# ---------------------------------------------------------------- an attribute measured on pixels

def stroke_thickness(x):
    r"""The mean stroke width of each image, in pixels:  2 * ink / total variation,  (N,) float64.

    For images (N, h, w), or (N, P) with P = side^2, of intensities in [0, 1]:

        ink = sum_ij x_ij                                            the stroke's area
        TV  = sum_ij |x_i,j+1 - x_ij| + sum_ij |x_i+1,j - x_ij|      the length of its outline
              (the image padded with a border of zeros, so strokes at the edge are closed)

    A stroke of width t and length L has area t L and outline 2 (t + L), so
    2 ink / TV = t L / (t + L) -> t when L >> t: the width, whatever the digit's size or length.
    (Mean ink alone would call a large 8 "thick" and a 1 "thin".)  Both sums are linear in x, so
    the measure does not change with the contrast; an image with no ink gets 0.
    """
    xp = array_module(x)
    if x.ndim == 2:
        side = math.isqrt(x.shape[1])
        if side * side != x.shape[1]:
            raise ValueError(f"Rows of {x.shape[1]} pixels are not square images: pass (N, h, w).")
        x = x.reshape(-1, side, side)
    if x.ndim != 3:
        raise ValueError(f"x has shape {x.shape}; expected (N, h, w) or (N, h*w).")
    padded = xp.pad(x.astype(xp.float64), ((0, 0), (1, 1), (1, 1)))      # (N, h+2, w+2)
    ink = padded.sum(axis=(1, 2))                                           # (N,)
    tv = (xp.abs(xp.diff(padded, axis=2)).sum(axis=(1, 2))
          + xp.abs(xp.diff(padded, axis=1)).sum(axis=(1, 2)))               # (N,)
    return xp.where(tv > 0, 2 * ink / xp.where(tv > 0, tv, 1.0), 0.0)


def quantile_split(values, q: float = 0.25, groups=None):
    r"""Boolean masks (high, low) of the values in the top and in the bottom fraction q.

    With ``groups`` (e.g. class labels, (N,)), the quantiles are taken within each group, so
    "thick" means thick for its digit class and a thickness vector is not a class vector.
    Host NumPy in, host NumPy out.
    """
    values = np.asarray(to_host(values))
    if not 0 < q <= 0.5:
        raise ValueError(f"q must be in (0, 0.5], got {q}.")
    groups = np.zeros(values.shape, dtype=int) if groups is None else np.asarray(to_host(groups))
    high = np.zeros(values.shape, dtype=bool)
    low = np.zeros(values.shape, dtype=bool)
    for g in np.unique(groups):
        in_g = groups == g
        lo, hi = np.quantile(values[in_g], [q, 1 - q])
        high |= in_g & (values >= hi)
        low |= in_g & (values <= lo)
    return high, low


# ---------------------------------------------------------------- paths in latent space

def interpolate(z_a, z_b, steps: int, method: str = "linear"):
    r"""Points from z_a to z_b at t = linspace(0, 1, steps):  z_a, z_b (..., D) -> (..., S, D).

        linear     z(t) = (1 - t) z_a + t z_b
        spherical  z(t) = sin((1 - t) W) / sin W  z_a  +  sin(t W) / sin W  z_b,
                   cos W = <z_a, z_b> / (|z_a| |z_b|)                 (Shoemake 1985; White 2016)

    Both start at z_a and end at z_b exactly.  Under the prior N(0, I) a typical z has norm near
    sqrt(D); the midpoint of a straight line between two such points is shorter (norm ~ sqrt(D/2)
    for orthogonal ends), where the prior puts little mass, while the spherical path keeps the
    norm (for ends of equal norm).  Where sin W ~ 0 (z_a and z_b parallel or opposite) or an end
    is 0, no great circle is defined and the spherical path is the linear one.
    """
    if method not in ("linear", "spherical"):
        raise ValueError(f"Unknown interpolation {method!r}: choose linear or spherical.")
    if steps < 2:
        raise ValueError(f"steps must be at least 2 (the two ends), got {steps}.")
    xp = array_module(z_a, z_b)
    z_a, z_b = xp.asarray(z_a), xp.asarray(z_b)
    t = xp.linspace(0.0, 1.0, steps, dtype=xp.result_type(z_a.dtype, z_b.dtype))[:, None]  # (S, 1)
    a, b = z_a[..., None, :], z_b[..., None, :]                         # (..., 1, D)
    if method == "linear":
        return (1 - t) * a + t * b
    norms = xp.linalg.norm(z_a, axis=-1) * xp.linalg.norm(z_b, axis=-1)            # (...,)
    cos = xp.where(norms > 0, (z_a * z_b).sum(axis=-1) / xp.where(norms > 0, norms, 1.0), 1.0)
    omega = xp.arccos(xp.clip(cos, -1.0, 1.0))[..., None, None]                    # (..., 1, 1)
    sin_omega = xp.sin(omega)
    parallel = sin_omega < 1e-6
    safe = xp.where(parallel, 1.0, sin_omega)
    w_a = xp.where(parallel, 1 - t, xp.sin((1 - t) * omega) / safe)               # (..., S, 1)
    w_b = xp.where(parallel, t, xp.sin(t * omega) / safe)
    return w_a * a + w_b * b


# ---------------------------------------------------------------- Gaussian decoders

def sigma_for_r_loss_factor(r_loss_factor: float, n_pixels: int) -> float:
    r"""The fixed decoder sigma that the Keras book's weighted squared error stands for.

    The loss  r * (1/P) sum_p (x_p - m_p)^2 + KL  (Foster, "Generative Deep Learning",
    ``r_loss_factor`` = r) is the negative ELBO of a Gaussian decoder N(x; m, sigma^2 I), whose

        -log p(x|z) = 1/(2 sigma^2) sum_p (x_p - m_p)^2 + (P/2) log(2 pi sigma^2),

    up to that constant, when the weights agree:  1/(2 sigma^2) = r / P,  i.e.

        sigma^2 = P / (2 r).

    A larger r is a smaller sigma: the decoder is told the pixels are less noisy, so
    reconstructions count for more against the KL.  r = 1000 on 784 pixels is sigma = 0.63.
    """
    if not r_loss_factor > 0:
        raise ValueError(f"r_loss_factor must be > 0, got {r_loss_factor}.")
    return math.sqrt(n_pixels / (2.0 * r_loss_factor))


def dequantize(x, rng):
    r"""Uniform dequantisation of grey levels x = k/255:  x~ = (k + u) / 256,  u ~ U[0, 1).

    A density on [0, 1]^P can put unbounded mass on a value every image shares exactly (the
    always-black corners of MNIST: a learned variance -> 0 and log p(x|z) -> +infinity).  Spread
    over its bin of width 1/256, each grey level becomes a continuous value, no two images agree
    exactly, and log p is bounded; moreover E_u log p(x~) - P log 256 <= log P(k) for the
    256-level data (Theis, van den Oord & Bethge 2016), so a negative ELBO on x~ gives bits per
    pixel, (-ELBO + P log 256) / (P log 2).  ``rng`` is a NumPy or CuPy generator on x's device.
    """
    xp = array_module(x)
    k = xp.rint(x * 255)                                                      # the grey level 0..255
    u = rng.random(x.shape, dtype=x.dtype)
    return ((k + u) / 256).astype(x.dtype)


def bits_per_pixel(nelbo: float, n_pixels: int, levels: int = 256) -> float:
    r"""-ELBO (nats per image) on dequantised data as bits per pixel of the ``levels``-level data:

        (-ELBO + P log levels) / (P log 2)

    an upper bound on the code length of the discrete images (:func:`dequantize`); the uniform
    density on [0, 1]^P scores log2(levels) = 8 bits.
    """
    return (nelbo + n_pixels * math.log(levels)) / (n_pixels * math.log(2))


__all__ = ["kl_per_dimension", "unit_statistics", "layer_names", "describe_units", "mean_encoding",
           "attribute_vector", "stroke_thickness", "quantile_split", "interpolate",
           "sigma_for_r_loss_factor", "dequantize", "bits_per_pixel", "decode_along"]


if __name__ == "__main__":                       # python -m minivae.analysis: the command lives in commands.py
    from .commands import analysis_main
    sys.exit(analysis_main())
