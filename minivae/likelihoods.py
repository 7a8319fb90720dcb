r"""Decoder likelihoods log p(x | z), summed over pixels, with their gradients.

The decoder maps z to ``out``; a likelihood reads ``out`` as the parameters of
p(x | z) and scores the data.  Axis legend: K samples, B batch, P pixels,
O = ``n_outputs(P)`` decoder outputs.  ``x`` is ``(B, P)``; ``out`` is
``(B, O)`` or ``(K, B, O)`` (the data broadcast over K); ``logp`` is
``out.shape[:-1]``.

Each likelihood has

    forward(x, out)        -> (logp, cache)    log p(x | z) per example, in nats
    backward(dlogp, cache) -> dout             dL/dout, out's shape
    mean(out)                                  E[x | z], for pictures
    init_output_bias(b, mean_x)                the decoder's output bias that starts E[x | z] at
                                               the mean training image (in place)
    check_data(x)                              None, or one clear error when x is data this
                                               likelihood cannot score (NaN, or not in [0, 1] for
                                               Bernoulli or discretised-logistic pixels)

``check_data`` reads x's minimum and maximum back to the host: on CuPy that waits for the GPU, so
it runs once per API call (:meth:`minivae.model.LatentVariableModel.forward`) or once per data set
(the trainer), never per step of a training loop.
"""
from __future__ import annotations

import math

import numpy as np

from .backend import array_module, to_host
from .checks import InvalidInput, InvalidInputType, check_choice, check_positive
from .gaussian import LOG_2PI, join, split
from .layers import sigmoid, softplus
from .parallel import for_rows


def finite_data_range(x, likelihood: str) -> tuple[float, float]:
    r"""(min x, max x) as host floats, or one clear error when x is not finite real data.

    NaN propagates through both reductions and +-inf shows in one of them, so two reductions and one
    device-to-host copy see every non-finite value.  An empty x has nothing to check: (0, 0).
    """
    if not hasattr(x, "dtype"):
        x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise InvalidInputType(f"x has dtype {x.dtype} but the {likelihood} likelihood needs real "
                               f"numbers: convert the data to floats first.")
    if x.size == 0:
        return 0.0, 0.0
    xp = array_module(x)
    lo, hi = (float(v) for v in to_host(xp.stack([x.min(), x.max()]).astype(xp.float64)))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        what = "NaN" if math.isnan(lo) or math.isnan(hi) else "infinite"
        raise InvalidInput(f"x holds {what} values but the {likelihood} likelihood needs finite "
                           f"data: find where they entered (loading, scaling) and remove them.")
    return lo, hi


class Bernoulli:
    r"""p(x | z) = prod_p Bernoulli(x_p; sigmoid(l_p)) with logits l = out, for x in {0, 1} (or [0, 1]).

    In the stable form, with softplus(l) = log(1 + e^l) = max(l, 0) + log(1 + e^{-|l|}):

        log p(x | l) = sum_p [ x_p log s_p + (1 - x_p) log(1 - s_p) ] = sum_p [ x_p l_p - softplus(l_p) ]

    Backward:  dl = dlogp * (x - sigmoid(l))          (K, B, P)

    Computed without overflow for any l, with one exp per logit, e = exp(-|l|) in (0, 1], and three
    identities that keep every other transcendental pass off the (K, B, P) logits:

      forward   x l - softplus(l) = u - log(1 + e),  u = x l - max(l, 0) = ((2x - 1) l - |l|) / 2,
                so log p = sum_p u_p - sum_p log(1 + e_p).  u is exact for binary x (0 or -|l|),
                and the two sums have one sign, so nothing cancels: on the shipped iwae-1-50
                decoder's logits (|l| ~ 13, log p ~ -84 nats) float32 log p is within 1.7e-5 nats of
                float64, the textbook per-pixel form within 2.2e-5.  (Summing x l and softplus(l)
                apart would cancel, 1.2e-4 nats, and 1.9e-4 with sum_p x_p l_p = h (W x^T) + b x
                as one small product; (x - 1/2) l and |l| / 2 apart: 1.0e-3.  All but the product
                are measured in tests/test_speed_paths.py.)
                sum_p log(1 + e_p) = sum_g log prod_{p in g} (1 + e_p) over groups g of at most 81
                pixels (:meth:`sum_log`): P / 16 logs instead of P, each product in [1, 2^81];
      backward  sigmoid(l) - 1/2 = sign(l) (1 / (1 + e) - 1/2),   as sigmoid(|l|) = 1 / (1 + e) and
                sigmoid(-l) = 1 - sigmoid(l): no exp or tanh, only 1 + e kept from the forward.

    Both run on cache-sized blocks of K rows, over threads (:func:`minivae.parallel.for_rows`).
    The cache holds x, l and 1 + e (one (K, B, P) array more than x and l).
    """
    name = "bernoulli"

    def n_outputs(self, n_pixels: int) -> int:
        return n_pixels

    def forward(self, x, out):
        xp = array_module(out)
        dtype = np.result_type(x.dtype, out.dtype)
        shape = np.broadcast_shapes(x.shape, out.shape)[:-1]       # (K, B)
        logp, a = xp.empty(shape, dtype), xp.empty(out.shape, dtype)
        for_rows(self._forward_rows, (out, logp, a), (2 * x - 1,))  # in blocks of K rows
        return logp, (x, out, a)

    @classmethod
    def _forward_rows(cls, out, logp, a, s):
        """logp = sum_p [u_p - log(1 + e_p)] and a = 1 + e, into the arrays given; s = 2x - 1."""
        xp = array_module(out)
        u2 = out * s                                   # s broadcast over K          (K, B, P)
        xp.abs(out, out=a)
        u2 -= a                                        # 2 u = (2x - 1) l - |l|
        xp.negative(a, out=a)
        xp.exp(a, out=a)                               # e = exp(-|l|) in (0, 1]
        a += 1                                         # 1 + e in (1, 2]
        u2.sum(axis=-1, out=logp)
        logp *= 0.5                                    # sum_p u_p
        logp -= cls.sum_log(a)                         # - sum_p log(1 + e_p)

    def backward(self, dlogp, cache):
        xp = array_module(dlogp)
        x, out, a = cache                              # a = 1 + e
        dout = xp.empty(out.shape, np.result_type(dlogp.dtype, a.dtype))
        for_rows(self._backward_rows, (dout, out, a), (dlogp[..., None], x - 0.5))
        return dout

    @staticmethod
    def _backward_rows(d, out, a, dlogp, x_half):
        """d = dlogp (x - sigmoid(l)) from a = 1 + e, into d; x_half = x - 1/2."""
        xp = array_module(d)
        xp.divide(1, a, out=d)                         # sigmoid(|l|) in [1/2, 1)
        d -= 0.5
        xp.copysign(d, out, out=d)                     # sigmoid(l) - 1/2
        xp.subtract(x_half, d, out=d)                  # x - sigmoid(l)
        d *= dlogp

    @staticmethod
    def sum_log(a, levels: int = 4):
        r"""sum_p log a_p over the last axis, for a_p in [1, 2]:  (..., P) -> (...).

            sum_p log a_p = sum_g log prod_{p in g} a_p

        Each of ``levels`` halvings multiplies the first half of the columns by the second (an odd
        column left over goes into column 0), so after four a column is the product of at most
        3^4 = 81 factors, in [1, 2^81] (float32 overflows at 2^128), and P / 16 logs remain.  Each
        product's rounding adds at most 80 float32 ulps relative, 5e-6 nats per group (measured
        against float64 on a trained model's logits: no worse than one log per pixel).
        """
        xp = array_module(a)
        n = a.shape[-1]
        for _ in range(levels):
            if n < 2:
                break
            h = n // 2
            prod = a[..., :h] * a[..., h:2 * h]
            if n % 2:
                prod[..., 0] *= a[..., 2 * h]
            a, n = prod, h
        return xp.log(a).sum(axis=-1)

    def mean(self, out):
        return sigmoid(out)

    def check_data(self, x) -> None:
        r"""x must be finite and in [0, 1]: binary pixels, or grey levels read as probabilities.

        Raw 0-255 pixels (whole numbers up to 255) are told to divide by 255 and binarise."""
        lo, hi = finite_data_range(x, self.name)
        if lo >= 0 and hi <= 1:
            return
        if lo >= 0 and hi <= 255 and hi.is_integer():
            fix = "raw 0-255 pixels? divide by 255 and binarise (minivae.data.binarize) first"
        else:
            fix = "rescale the data to [0, 1], or use a gaussian likelihood for real values"
        raise InvalidInput(f"x has values in [{lo:g}, {hi:g}] but the {self.name} likelihood "
                           f"needs x in [0, 1]: {fix}.")

    def init_output_bias(self, b, mean_x):
        r"""b = logit(m) = log m - log(1 - m),  m = clip(mean_x, 0.001, 0.999)  (Burda et al.'s code).

        With the weights small at the start, sigmoid(l) ~ sigmoid(b) = m: the decoder starts at the
        mean image, and the clip keeps always-black pixels at a finite logit.  b (P,), in place.
        """
        xp = array_module(b)
        m = xp.clip(mean_x, 0.001, 0.999)
        b[...] = xp.log(m) - xp.log1p(-m)


class GaussianFixed:
    r"""p(x | z) = N(x; m, sigma^2 I) with m = out and a fixed standard deviation ``sigma``.

        log p(x | m) = -1/2 sum_p [ (x_p - m_p)^2 / sigma^2 + log 2 pi sigma^2 ]

    Up to a constant this is -(x - m)^2 summed, weighted by 1 / (2 sigma^2): a
    squared-error loss with weight ``w`` is a Gaussian with sigma^2 = 1 / (2 w).

    Backward:  dm = dlogp * (x - m) / sigma^2          (K, B, P)
    """
    name = "gaussian"

    def __init__(self, sigma: float = 1.0):
        self.sigma = check_positive("sigma", sigma,
                                    "sigma is the Gaussian decoder's standard deviation, e.g. 1")

    def n_outputs(self, n_pixels: int) -> int:
        return n_pixels

    def forward(self, x, out):
        inv_var = 1.0 / self.sigma ** 2
        diff = x - out                                 # (K, B, P)
        sq = (diff * diff).sum(axis=-1)
        const = out.shape[-1] * (LOG_2PI + 2 * math.log(self.sigma))
        return -0.5 * (inv_var * sq + const), (diff, inv_var)

    def backward(self, dlogp, cache):
        diff, inv_var = cache
        return diff * (dlogp[..., None] * inv_var)

    def mean(self, out):
        return out

    def check_data(self, x) -> None:
        """x must be finite; any real value has a density."""
        finite_data_range(x, self.name)

    def init_output_bias(self, b, mean_x):
        r"""b = mean_x: the decoder's mean starts at the mean image.  b (P,), in place."""
        b[...] = mean_x


class GaussianLearned:
    r"""p(x | z) = N(x; m, diag(exp(v))) with a mean and a log-variance per pixel: out = [m, v].

    ``out`` is ``(..., 2P)``: the first P columns are the means m, the last P the
    log-variances v.

        log p(x | m, v) = -1/2 sum_p [ log 2 pi + v_p + (x_p - m_p)^2 exp(-v_p) ]

    Backward, with r = (x - m) exp(-v):
        dm = dlogp * r                                 (K, B, P)
        dv = dlogp * ((x - m) r - 1) / 2               (K, B, P)
    and dout = [dm, dv].
    """
    name = "gaussian_learned"

    def n_outputs(self, n_pixels: int) -> int:
        return 2 * n_pixels

    def forward(self, x, out):
        xp = array_module(out)
        m, v = split(out)                                # (..., P) each
        diff = x - m
        r = diff * xp.exp(-v)
        logp = -0.5 * ((diff * r + v).sum(axis=-1) + m.shape[-1] * LOG_2PI)
        return logp, (diff, r)

    def backward(self, dlogp, cache):
        diff, r = cache
        d = dlogp[..., None]
        dm = d * r
        dv = 0.5 * (dm * diff - d)
        return join(dm, dv)                              # dout = [dm, dv]

    def mean(self, out):
        return split(out)[0]

    def check_data(self, x) -> None:
        """x must be finite; any real value has a density."""
        finite_data_range(x, self.name)

    def split(self, out):
        r"""(m, v): the means and the log-variances of out = [m, v], each (..., P)."""
        return split(out)

    def init_output_bias(self, b, mean_x):
        r"""b = [mean_x, 0]: the mean starts at the mean image, the log-variance at 0.  b (2P,)."""
        b[: b.shape[0] // 2] = mean_x


LOG_S_MIN = -7.0        # the floor on log s, as in PixelCNN++: s >= e^-7 ~ 9e-4 < 1/255
HALF_BIN = 1.0 / 255    # half the width of one of the 256 bins on y = 2x - 1 in [-1, 1]


class DiscretizedLogistic:
    r"""8-bit pixels under a logistic per pixel, integrated over each pixel's bin: out = [m, log s].

    Salimans et al. 2017 (PixelCNN++), eq. 2, with one logistic per pixel and no mixture.
    x = k/255 (k = 0..255) is read as y = 2x - 1 in [-1, 1]; bin k is [y - 1/255, y + 1/255], and
    the edge bins take the tails, so the 256 probabilities sum to one.  ``out`` is ``(..., 2P)``:
    the first P columns are the locations m, the last P the log-scales log s, clamped from below at
    ``LOG_S_MIN`` = -7 as in PixelCNN++ (its gradient is zero where log s < -7).  With
    a = (y + 1/255 - m) / s and b = (y - 1/255 - m) / s:

        p(x) = sigmoid(a) - sigmoid(b)   for 0 < k < 255
        p(x) = sigmoid(a)                for k = 0          (the whole lower tail)
        p(x) = 1 - sigmoid(b)            for k = 255        (the whole upper tail)

    Stable form.  sigmoid(a) - sigmoid(b) = sigmoid(a) (1 - sigmoid(b)) (1 - e^-d) with
    d = a - b = 2 / (255 s) > 0 (multiply out (e^a - e^b) / ((1 + e^a)(1 + e^b))), so with the
    indicators u = [k < 255] (bin has an upper edge) and l = [k > 0] (a lower edge):

        log p = sum_p [ -u softplus(-a) - l softplus(b) + u l log(1 - e^-d) ]
        log(1 - e^-d) = log d + log r,   r = (1 - e^-d) / d = -expm1(-d) / d  in (0, 1]

    log d = log(2/255) - log s is exact for any s, so no difference of sigmoids is ever taken, no
    fallback to the density at the bin centre is needed, and nothing overflows: the clamp keeps
    d <= 2 e^7 / 255 ~ 8.6, and where d underflows to 0 (log s > ~745 in float64) r is its limit 1.
    x off the grid is scored with a bin of the same width centred on it; x < 1/510 counts as k = 0
    and x > 509/510 as k = 255.

    Backward, with t = e^-d / r = d / (e^d - 1) and g = dlogp[..., None]       (K, B, P) each:
        dlogp/da = u sigmoid(-a),   dlogp/db = -l sigmoid(b),   d log(1 - e^-d) / dd = 1 / (e^d - 1)
        1. dm     = g (da/dm dlogp/da + db/dm dlogp/db),  da/dm = db/dm = -1/s, d free of m
                  = g / s (l sigmoid(b) - u sigmoid(-a))
        2. dlog_s = g [log s >= -7] (-a u sigmoid(-a) + b l sigmoid(b) - u l t)
                    (da/dlog s = -a, db/dlog s = -b, dd/dlog s = -d)
    and dout = [dm, dlog_s].
    """
    name = "discretized_logistic"

    def n_outputs(self, n_pixels: int) -> int:
        return 2 * n_pixels

    def forward(self, x, out):
        xp = array_module(out)
        m, log_s = split(out)                            # (..., P) each
        log_s_c = xp.maximum(log_s, LOG_S_MIN)           # clamped log s
        inv_s = xp.exp(-log_s_c)                         # 1/s <= e^7                  (K, B, P)
        c = (2 * x - 1) - m                              # y - m, x broadcast over K
        a = (c + HALF_BIN) * inv_s                       # upper edge, standardised
        b = (c - HALF_BIN) * inv_s                       # lower edge, standardised
        d = (2 * HALF_BIN) * inv_s                       # a - b > 0, or 0 where 1/s underflows
        pos = d > 0
        d1 = xp.where(pos, d, 1)
        r = xp.where(pos, -xp.expm1(-d1) / d1, 1)        # (1 - e^-d) / d in (0, 1]
        up = (x < 1 - HALF_BIN / 2).astype(out.dtype)    # u: k < 255                  (B, P)
        lo = (x > HALF_BIN / 2).astype(out.dtype)        # l: k > 0
        log_1m = (math.log(2 * HALF_BIN) - log_s_c) + xp.log(r)      # log(1 - e^-d)
        per = up * log_1m
        per *= lo
        per -= up * softplus(-a)
        per -= lo * softplus(b)
        return per.sum(axis=-1), (a, b, inv_s, r, up, lo, log_s >= LOG_S_MIN)

    def backward(self, dlogp, cache):
        xp = array_module(dlogp)
        a, b, inv_s, r, up, lo, free = cache
        g = dlogp[..., None]
        t = xp.exp((-2 * HALF_BIN) * inv_s) / r         # e^-d / r = d / (e^d - 1)
        sa = up * sigmoid(-a)                            # dlogp/da
        sb = lo * sigmoid(b)                             # -dlogp/db
        dm = g * inv_s * (sb - sa)                                    # 1.
        dlog_s = g * free * (b * sb - a * sa - up * lo * t)           # 2.
        return join(dm, dlog_s)                          # dout = [dm, dlog_s]

    def mean(self, out):
        r"""clip((m + 1) / 2, 0, 1): the logistic's mean (and median) m, back on the [0, 1] scale.

        An approximation of E[x | z]: it ignores how the edge bins pile up the tails and how the
        bins round (within half a bin, 1/510, as s -> 0 with m inside [-1, 1]), and costs one pass
        instead of a sum over 256 bins."""
        xp = array_module(out)
        return xp.clip((split(out)[0] + 1) / 2, 0, 1)

    def check_data(self, x) -> None:
        r"""x must be finite and in [0, 1]: 8-bit pixels k as x = k/255."""
        lo, hi = finite_data_range(x, self.name)
        if lo >= 0 and hi <= 1:
            return
        raw = lo >= 0 and hi <= 255 and hi.is_integer()
        fix = ("raw 0-255 pixels? divide by 255 first" if raw
               else "rescale 8-bit pixels k to k/255 first")
        raise InvalidInput(f"x has values in [{lo:g}, {hi:g}] but the {self.name} likelihood "
                           f"needs x in [0, 1]: {fix}.")

    def split(self, out):
        r"""(m, log_s): the locations and the unclamped log-scales in out = [m, log_s], (..., P)."""
        return split(out)

    def init_output_bias(self, b, mean_x):
        r"""b = [2 mean_x - 1, 0]: m starts at the mean image on the [-1, 1] scale, log s at 0.

        s = 1 is broad on [-1, 1]: every bin starts with some mass and the decoder learns to
        narrow it.  b (2P,), in place."""
        P = b.shape[0] // 2
        b[:P] = 2 * mean_x - 1
        b[P:] = 0


def bits_per_dim(nats_per_example: float, n_dims: int) -> float:
    r"""-log p in nats per example as bits per dimension:  nats / (n_dims ln 2).

    For 8-bit data scored by :class:`DiscretizedLogistic` (e.g. 3,072 for a CIFAR-10 image); for a
    density on dequantised data see :func:`minivae.analysis.bits_per_pixel`, which adds log 256."""
    return nats_per_example / (n_dims * math.log(2))


LIKELIHOODS = {"bernoulli": Bernoulli, "gaussian": GaussianFixed,
               "gaussian_learned": GaussianLearned, "discretized_logistic": DiscretizedLogistic}


def make_likelihood(name: str, sigma: float = 1.0):
    """The likelihood called ``name``; ``sigma`` is used by the fixed-variance Gaussian only."""
    check_choice("likelihood", name, LIKELIHOODS)
    return GaussianFixed(sigma) if name == "gaussian" else LIKELIHOODS[name]()
