r"""Convolutions with hand-written backward: Conv2d, ConvTranspose2d, ResidualBlock, and the
Reshape / Bias layers that join them to Dense layers and flat data in a
:class:`minivae.layers.Sequential` network.

Axis legend: N images, C channels (C_in in, C_out out), H, W image height and width (H_out, W_out
after a layer), kh, kw kernel height and width, K importance samples, B batch, F flat features.
s is the stride, p the zero padding (the same on every side).

Every layer is a pair, as in :mod:`minivae.layers`,

    forward(x)          -> (y, cache)
    backward(dy, cache) -> (dx, grads)          (layers with parameters also take need_dx)

with nothing kept on ``self`` between the calls.  Like Dense's ``(..., I)``, every layer takes any
leading axes: a convolution sees ``(..., C, H, W)`` and treats the prod(...) leading entries as its
N images.  So a decoder's z ``(K, B, D)`` passes Dense -> Unflatten -> convolutions -> Flatten ->
Bias and comes out ``(K, B, O)``, with no bookkeeping of the leading shape between layers.

The one convolution.  With x_p the input zero-padded by p on each side, (N, C_in, H + 2p, W + 2p),

    y[n, o, h, w] = sum_{c, i, j} W[o, c, i, j] x_p[n, c, s h + i, s w + j]              (conv2d)
    H_out = (H + 2p - kh) // s + 1,   W_out likewise.

im2col: the windows X[n, h, w, c, i, j] = x_p[n, c, s h + i, s w + j] are a strided view of x_p
(``as_strided``, no copy), and y = X . W is ONE tensordot over (c, i, j).  y is linear in x and in
W, so its backward is its two adjoints, each one product:

    in x   (conv2d_transpose):   dX[c, i, j, n, h, w] = sum_o W[o, c, i, j] dy[n, o, h, w],
           one tensordot over o, then col2im sums every window back onto its pixels:
           dx_p[n, c, s h + i, s w + j] += dX[c, i, j, n, h, w], and dx = dx_p without its border;
    in W   (conv2d_weight_grad): dW[o, c, i, j] = sum_{n, h, w} dy[n, o, h, w] X[n, h, w, c, i, j],
           a correlation of dy with x, one tensordot over (n, h, w).

Conv2d runs conv2d forward and both adjoints backward.  ConvTranspose2d is the same three functions
with the roles of input and output swapped: conv2d_transpose forward, conv2d (dx) and
conv2d_weight_grad (dW) backward.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .backend import array_module
from .checks import InvalidInput, InvalidInputType, check_choice, check_int, check_sizes
from .layers import make_activation

INITS = ("he", "glorot", "zeros")


# ---------------------------------------------------------------- sizes

def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Conv2d's output height (or width): (size + 2p - k) // s + 1."""
    return (size + 2 * padding - kernel) // stride + 1


def conv_transpose_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0,
                               output_padding: int = 0) -> int:
    """ConvTranspose2d's output height (or width): (size - 1) s - 2p + k + output_padding."""
    return (size - 1) * stride - 2 * padding + kernel + output_padding


# ---------------------------------------------------------------- im2col, col2im, three products

def _pad(x, p: int):
    """x (N, C, H, W) with p zeros on each side of H and W: (N, C, H + 2p, W + 2p)."""
    if p == 0:
        return x
    xp = array_module(x)
    n, c, h, w = x.shape
    out = xp.zeros((n, c, h + 2 * p, w + 2 * p), dtype=x.dtype)
    out[:, :, p:p + h, p:p + w] = x
    return out


def _windows(x, kh: int, kw: int, s: int, p: int):
    r"""im2col as a view: X[n, h, w, c, i, j] = x_p[n, c, s h + i, s w + j].

    x (N, C, H, W) -> X (N, H_out, W_out, C, kh, kw).

    A strided view of the padded input: a step in h moves s rows, a step in i moves one row.
    Nothing is copied until a product reads it; never written to (the windows overlap).
    """
    xp = array_module(x)
    x = _pad(x, p)
    n, c, hp, wp = x.shape
    h_out, w_out = (hp - kh) // s + 1, (wp - kw) // s + 1
    sn, sc, sh, sw = x.strides
    return xp.lib.stride_tricks.as_strided(x, (n, h_out, w_out, c, kh, kw),
                                           (sn, s * sh, s * sw, sc, sh, sw))


def _col2im(cols, hw, s: int, p: int):
    r"""The adjoint of :func:`_windows`: sum columns (C, kh, kw, N, H_out, W_out) onto (N, C, H, W).

    dx_p[n, c, s h + i, s w + j] += cols[c, i, j, n, h, w], then the border p is cropped.  For one
    kernel offset (i, j) the targets s h + i, s w + j form a strided slice of dx_p, so the loop
    runs over the kh kw offsets only, each adding a whole (C, N, H_out, W_out) slab; overlapping
    windows meet in the ``+=`` of different offsets, never within one.
    """
    xp = array_module(cols)
    c, kh, kw, n, h_out, w_out = cols.shape
    h, w = hw
    dxp = xp.zeros((n, c, h + 2 * p, w + 2 * p), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            slab = cols[:, i, j].transpose(1, 0, 2, 3)               # (N, C, H_out, W_out)
            dxp[:, :, i:i + s * h_out:s, j:j + s * w_out:s] += slab
    return dxp[:, :, p:p + h, p:p + w]


def conv2d(x, W, s: int = 1, p: int = 0):
    r"""y = x * W: x (N, C_in, H, W), W (C_out, C_in, kh, kw) -> y (N, C_out, H_out, W_out).

    y[o, n, h, w] = sum_{c,i,j} W[o, c, i, j] X[n, h, w, c, i, j]: one tensordot of W with the
    windows, computed as (C_out, N, H_out, W_out) and returned as its (N, C_out, H_out, W_out) view.
    W comes first so that the copy tensordot makes of the windows, (C kh kw, N H_out W_out), reads
    x along its rows (W_out innermost) rather than kw pixels at a time.
    """
    xp = array_module(x, W)
    _, _, kh, kw = W.shape
    y = xp.tensordot(W, _windows(x, kh, kw, s, p), axes=([1, 2, 3], [3, 4, 5]))
    return y.transpose(1, 0, 2, 3)


def conv2d_transpose(dy, W, s: int, p: int, hw):
    r"""The adjoint of conv2d in x: dy (N, C_out, H_out, W_out), W (C_out, C_in, kh, kw) -> dx.

    dx (N, C_in, H, W), with (H, W) = ``hw``:

    dX[c, i, j, n, h, w] = sum_o W[o, c, i, j] dy[n, o, h, w]   one tensordot over o,
    then col2im onto the image:  <conv2d(x, W), dy> = <x, conv2d_transpose(dy, W)>.
    At stride 1 with fewer output than twice the input channels, the same sums are taken as a
    convolution of dy with the flipped kernel (:func:`flipped`), which needs no col2im.
    """
    xp = array_module(dy, W)
    c_out, c_in, kh, kw = W.shape
    if s == 1 and kh == kw and p <= kh - 1 and c_out <= 2 * c_in and tuple(hw) == (
            dy.shape[2] + kh - 1 - 2 * p, dy.shape[3] + kw - 1 - 2 * p):
        return conv2d(dy, flipped(W), 1, kh - 1 - p)            # the same sums, no col2im
    cols = xp.tensordot(W, dy, axes=([0], [1]))                  # (C_in, kh, kw, N, H_out, W_out)
    return _col2im(cols, hw, s, p)


def flipped(W):
    r"""W (C_out, C_in, kh, kw) -> W' (C_in, C_out, kh, kw), W'[c, o, i, j] = W[o, c, kh-1-i, kw-1-j].

    For stride 1 the transposed convolution is a convolution: dx = conv2d(dy, W', 1, k - 1 - p)
    (every output pixel of dx gathers dy over the kernel turned by 180 degrees), which
    :func:`conv2d_transpose` uses when it reads less memory than col2im (C_out <= 2 C_in, square
    kernel, p <= k - 1).  The tests run both forms against a nested-loop reference."""
    xp = array_module(W)
    return xp.ascontiguousarray(W.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])


def conv2d_weight_grad(x, dy, kernel, s: int, p: int):
    r"""The adjoint of conv2d in W: dW[o, c, i, j] = sum_{n,h,w} dy[n, o, h, w] X[n, h, w, c, i, j].

    x (N, C_in, H, W), dy (N, C_out, H_out, W_out) -> dW (C_out, C_in, kh, kw): one tensordot
    over (n, h, w), a correlation of dy with the (padded, strided) input.  The windows come first
    for the reason given in :func:`conv2d`; the (C_in, kh, kw, C_out) result is made contiguous.
    """
    xp = array_module(x, dy)
    kh, kw = kernel
    dW = xp.tensordot(_windows(x, kh, kw, s, p), dy, axes=([0, 1, 2], [0, 2, 3]))
    return xp.ascontiguousarray(dW.transpose(3, 0, 1, 2))


# ---------------------------------------------------------------- checks and initialisation

def _pair(name: str, value) -> tuple:
    """A kernel size: an int k (a k x k kernel) or a pair (kh, kw) of ints >= 1."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value, value)
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise InvalidInputType(f"{name} must be an integer >= 1 or a pair (kh, kw) of them, "
                               f"got {value!r}.")
    return tuple(check_int(name, v) for v in value)


def _images(layer: str, x, c: int):
    """x (..., C, H, W) as (N, C, H, W), after checking its rank and its number of channels."""
    if x.ndim < 3 or x.shape[-3] != c:
        raise InvalidInput(f"{layer} expects images of shape (..., {c}, H, W) with {c} channels, "
                           f"got shape {tuple(x.shape)}: pass {c}-channel images (Unflatten turns "
                           f"flat rows (..., C*H*W) into images).")
    return x.reshape((-1,) + x.shape[-3:])


def _init_weights(rng, shape, fan_in: float, fan_out: float, init: str, dtype, xp):
    r"""Weights drawn on the host (the same on every backend), then moved to ``xp`` as ``dtype``.

    "he":     W ~ N(0, 2 / fan_in)    keeps a ReLU network's activations' scale (He et al. 2015);
    "glorot": W ~ U(-a, a), a = sqrt(6 / (fan_in + fan_out))   as :class:`minivae.layers.Dense`;
    "zeros":  W = 0, for a network's last layer, so that it starts at its bias (nothing drawn).
    """
    rng = np.random.default_rng(0) if rng is None else rng
    if check_choice("init", init, INITS) == "zeros":
        return xp.zeros(shape, dtype=dtype)
    if init == "he":
        w = rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)
    else:
        a = math.sqrt(6.0 / (fan_in + fan_out))
        w = rng.uniform(-a, a, size=shape)
    return xp.asarray(w, dtype=dtype)


class _ConvBase:
    """What both convolutions share: their checked settings, W drawn by ``init``, b = 0."""

    def __init__(self, c_in, c_out, kernel, stride, padding, w_shape, fans, rng, dtype, xp, init):
        self.c_in, self.c_out = check_int("c_in", c_in), check_int("c_out", c_out)
        self.kernel = _pair("kernel", kernel)
        self.stride = check_int("stride", stride)
        self.padding = check_int("padding", padding, 0)
        W = _init_weights(rng, w_shape(*self.kernel), *fans(*self.kernel), init, dtype, xp)
        self.params = {"W": W, "b": xp.zeros(self.c_out, dtype=dtype)}

    def _add_bias(self, y4, lead):
        """y4 (N, C_out, H, W) + b[o] on every pixel, returned with the leading axes ``lead``."""
        y4 += self.params["b"][:, None, None]
        return y4.reshape(lead + y4.shape[1:])


# ---------------------------------------------------------------- Conv2d

class Conv2d(_ConvBase):
    r"""y = x * W + b:  x (..., C_in, H, W) -> y (..., C_out, H_out, W_out).

    W (C_out, C_in, kh, kw), b (C_out,);  H_out = (H + 2p - kh) // s + 1 (:func:`conv_output_size`).

        y[n, o, h, w] = b[o] + sum_{c,i,j} W[o, c, i, j] x_p[n, c, s h + i, s w + j]

    Backward, with the leading axes flattened into N images (shapes as in the module docstring):

        dW = sum_{n,h,w} dy[n, o, h, w] X[n, h, w, c, i, j]   (C_out, C_in, kh, kw)  a correlation
        db = sum_{n,h,w} dy[n, o, h, w]                       (C_out,)
        dx = col2im(dy . W)                                   (..., C_in, H, W)  a transposed conv
             (at stride 1, when cheaper, as a convolution of dy with the flipped W: :func:`flipped`)

    Keeps x: dW reads its windows again (a view; no columns are kept between the calls).
    Init: "he" (default) W ~ N(0, 2 / fan_in), fan_in = C_in kh kw; "glorot" as Dense, with
    fan_out = C_out kh kw; b = 0.
    """

    def __init__(self, c_in: int, c_out: int, kernel, stride: int = 1, padding: int = 0,
                 rng: np.random.Generator | None = None, dtype=np.float32, xp=np, init: str = "he"):
        super().__init__(c_in, c_out, kernel, stride, padding,
                         w_shape=lambda kh, kw: (c_out, c_in, kh, kw),
                         fans=lambda kh, kw: (c_in * kh * kw, c_out * kh * kw),
                         rng=rng, dtype=dtype, xp=xp, init=init)

    def forward(self, x):
        x4 = _images("Conv2d", x, self.c_in)
        (kh, kw), p = self.kernel, self.padding
        h, w = x4.shape[2:]
        if h + 2 * p < kh or w + 2 * p < kw:
            raise InvalidInput(f"Conv2d's {kh}x{kw} kernel is larger than the {h}x{w} image padded "
                               f"by {p} on each side: use larger images, more padding or a smaller "
                               f"kernel.")
        y4 = conv2d(x4, self.params["W"], self.stride, p)         # (N, C_out, H_out, W_out)
        return self._add_bias(y4, x.shape[:-3]), x

    def backward(self, dy, cache, need_dx: bool = True):
        """``need_dx=False`` skips dx (the col2im), for a first layer whose input is data."""
        x = cache
        x4, dy4 = x.reshape((-1,) + x.shape[-3:]), dy.reshape((-1,) + dy.shape[-3:])
        W, s, p = self.params["W"], self.stride, self.padding
        grads = {"W": conv2d_weight_grad(x4, dy4, self.kernel, s, p),     # (C_out, C_in, kh, kw)
                 "b": dy4.sum(axis=(0, 2, 3))}                            # (C_out,)
        dx = conv2d_transpose(dy4, W, s, p, x4.shape[2:]).reshape(x.shape) if need_dx else None
        return dx, grads


# ---------------------------------------------------------------- ConvTranspose2d

class ConvTranspose2d(_ConvBase):
    r"""A convolution's adjoint, plus a bias: x (..., C_in, H, W) -> y (..., C_out, H_out, W_out).

    W (C_in, C_out, kh, kw) as in PyTorch, b (C_out,);  H_out = (H - 1) s - 2p + kh + output_padding
    (:func:`conv_transpose_output_size`), output_padding < s adding rows at the bottom (columns at
    the right) so that a stride-s Conv2d with the same kernel and padding maps H_out back to H.
    With W read as a Conv2d weight from C_out to C_in channels, conv_W: (C_out, H_out) -> (C_in, H),

        y = conv_W^T(x) + b:   y_p[n, o, s h + i, s w + j] += sum_c x[n, c, h, w] W[c, o, i, j]

    (every input pixel stamps the kernel onto the output, stride s apart; y is y_p cropped by p).
    Backward, from <conv_W^T(x), dy> = <x, conv_W(dy)>:

        dx = conv_W(dy)                                       (..., C_in, H, W)  a convolution
        dW = sum_{n,h,w} x[n, c, h, w] DY[n, h, w, o, i, j]   (C_in, C_out, kh, kw)  a correlation
        db = sum_{n,h,w} dy[n, o, h, w]                       (C_out,)

    with DY the windows of dy (padded by p, stride s): Conv2d's three products, roles swapped.
    Keeps x.  Init: "he" W ~ N(0, 2 / fan_in) with fan_in = C_in ceil(kh/s) ceil(kw/s), the most
    input taps any output pixel sums; "glorot" with fan_out = C_out kh kw; b = 0.
    """

    def __init__(self, c_in: int, c_out: int, kernel, stride: int = 1, padding: int = 0,
                 output_padding: int = 0, rng: np.random.Generator | None = None,
                 dtype=np.float32, xp=np, init: str = "he"):
        super().__init__(c_in, c_out, kernel, stride, padding,
                         w_shape=lambda kh, kw: (c_in, c_out, kh, kw),
                         fans=lambda kh, kw: (c_in * -(-kh // stride) * -(-kw // stride),
                                              c_out * kh * kw),
                         rng=rng, dtype=dtype, xp=xp, init=init)
        self.output_padding = check_int("output_padding", output_padding, 0)
        if self.output_padding >= self.stride:
            raise InvalidInput(f"output_padding must be smaller than stride, got output_padding="
                               f"{self.output_padding} with stride={self.stride}: rows beyond the "
                               f"stride are reached by no input, so use output_padding < stride.")

    def output_size(self, h: int, w: int) -> tuple:
        """(H_out, W_out) for an (h, w) input."""
        args = (self.stride, self.padding, self.output_padding)
        return (conv_transpose_output_size(h, self.kernel[0], *args),
                conv_transpose_output_size(w, self.kernel[1], *args))

    def forward(self, x):
        x4 = _images("ConvTranspose2d", x, self.c_in)
        h_out, w_out = self.output_size(*x4.shape[2:])
        if h_out < 1 or w_out < 1:
            h, w = x4.shape[2:]
            raise InvalidInput(f"ConvTranspose2d would turn the {h}x{w} image into {h_out}x{w_out} "
                               f"pixels (padding {self.padding} crops that many from each side): "
                               f"use less padding, a larger kernel or larger images.")
        y4 = conv2d_transpose(x4, self.params["W"], self.stride, self.padding, (h_out, w_out))
        return self._add_bias(y4, x.shape[:-3]), x

    def backward(self, dy, cache, need_dx: bool = True):
        """``need_dx=False`` skips dx (a convolution of dy), for a first layer fed with data."""
        x = cache
        x4, dy4 = x.reshape((-1,) + x.shape[-3:]), dy.reshape((-1,) + dy.shape[-3:])
        W, s, p = self.params["W"], self.stride, self.padding
        grads = {"W": conv2d_weight_grad(dy4, x4, self.kernel, s, p),     # (C_in, C_out, kh, kw)
                 "b": dy4.sum(axis=(0, 2, 3))}                            # (C_out,)
        dx = conv2d(dy4, W, s, p).reshape(x.shape) if need_dx else None
        return dx, grads


# ---------------------------------------------------------------- reshapes and the output bias

def _shape(name: str, value) -> tuple:
    """A non-empty shape of sizes >= 1, e.g. (1, 28, 28); an int n means (n,)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value,)
    dims = tuple(check_sizes(name, value))
    if not dims:
        raise InvalidInput(f"{name} must hold at least one size, such as (1, 28, 28), got ().")
    return dims


def _check_trailing(layer: str, x, shape: tuple):
    """Raise unless x's shape ends in ``shape``."""
    if tuple(x.shape[x.ndim - len(shape):]) != shape or x.ndim < len(shape):
        dims = ", ".join(map(str, shape))
        raise InvalidInput(f"{layer} expects inputs of shape (..., {dims}), got shape "
                           f"{tuple(x.shape)}: pass inputs whose last axes are ({dims}).")


class Reshape:
    r"""y = x reshaped from (..., *in_shape) to (..., *out_shape);   dx = dy reshaped back.

    The leading axes (B,) or (K, B) pass through untouched; the cache is x's shape, all backward
    needs.  A view whenever NumPy / CuPy can make one.
    """
    params: dict = {}

    def __init__(self, in_shape, out_shape):
        self.in_shape, self.out_shape = _shape("in_shape", in_shape), _shape("out_shape", out_shape)
        if math.prod(self.in_shape) != math.prod(self.out_shape):
            n_in, n_out = math.prod(self.in_shape), math.prod(self.out_shape)
            raise InvalidInput(f"Reshape cannot turn {self.in_shape} into {self.out_shape}: they "
                               f"hold {n_in} and {n_out} values; give two shapes of the same size.")

    def forward(self, x):
        _check_trailing(type(self).__name__, x, self.in_shape)
        return x.reshape(x.shape[:x.ndim - len(self.in_shape)] + self.out_shape), x.shape

    def backward(self, dy, cache):
        return dy.reshape(cache), {}


class Flatten(Reshape):
    r"""(..., C, H, W) -> (..., C H W): images back to flat rows (``shape`` = (C, H, W))."""

    def __init__(self, shape):
        shape = _shape("shape", shape)
        super().__init__(shape, (math.prod(shape),))


class Unflatten(Reshape):
    r"""(..., C H W) -> (..., C, H, W): flat rows (an encoder's x (B, P), a Dense output) to images.

    ``shape`` = (C, H, W)."""

    def __init__(self, shape):
        shape = _shape("shape", shape)
        super().__init__((math.prod(shape),), shape)


class Bias:
    r"""y = x + b:  x (..., *shape), b ``shape`` (an int n means (n,)), added over the leading axes.

    A learned bias per output element: a convolutional decoder's (..., C H W) logits get one per
    pixel, which the convolutions' per-channel biases cannot give.  Initialised to 0.

        dx = dy;   db = sum of dy over the leading axes   (``shape``)
    """

    def __init__(self, shape, dtype=np.float32, xp=np):
        self.params = {"b": xp.zeros(_shape("shape", shape), dtype=dtype)}

    def forward(self, x):
        b = self.params["b"]
        _check_trailing("Bias", x, b.shape)
        return x + b, None

    def backward(self, dy, cache, need_dx: bool = True):
        b = self.params["b"]
        db = dy.reshape((-1,) + b.shape).sum(axis=0)
        return (dy if need_dx else None), {"b": db}


# ---------------------------------------------------------------- residual block

class ResidualBlock:
    r"""A pre-activation residual block (He et al. 2016, "Identity mappings in deep ResNets"):

        y = skip(x) + conv2(act(conv1(act(x))))

    conv2 is a 3x3 stride-1 padding-1 Conv2d (C_out -> C_out); ``kind`` sets conv1 and the skip:

        "same"  conv1 3x3 Conv2d, padding 1              skip = x (a 1x1 Conv2d if C_in != C_out)
                (..., C_in, H, W) -> (..., C_out, H, W)
        "down"  conv1 3x3 Conv2d, stride 2, padding 1    skip = 1x1 Conv2d, stride 2
                (..., C_in, H, W) -> (..., C_out, ceil(H/2), ceil(W/2))
        "up"    conv1 4x4 ConvTranspose2d, stride 2, padding 1
                skip = 1x1 ConvTranspose2d, stride 2, output_padding 1 (x lands on the even pixels)
                (..., C_in, H, W) -> (..., C_out, 2H, 2W)

    Pre-activation rather than act(skip(x) + branch): the block's output is not clipped by a last
    ReLU, so a stack can end in logits or means directly, and the skip path carries dy unchanged.
    Backward, the forward in reverse, with a0 = act(x), h1 = conv1(a0), a1 = act(h1):

        dh2 = dy;  da1 = conv2^T(dy);  dh1 = act'(h1) da1;  da0 = conv1^T(dh1)
        dx  = act'(x) da0 + skip^T(dy)            (skip^T(dy) = dy for the identity skip)

    Parameters ``"conv1.W"``, ``"conv1.b"``, ``"conv2.W"``, ``"conv2.b"`` and, with a 1x1 skip,
    ``"skip.W"``, ``"skip.b"``.  ``branch_init="zeros"`` starts conv2 at 0, so that the block starts
    as its skip and a deep stack keeps its input's scale (Goyal et al. 2017, zero-init of each
    residual branch's last layer); every other convolution takes ``init``.
    """

    def __init__(self, c_in: int, c_out: int | None = None, kind: str = "same",
                 activation: str = "relu", rng: np.random.Generator | None = None,
                 dtype=np.float32, xp=np, init: str = "he", branch_init: str | None = None):
        c_out = c_in if c_out is None else c_out
        self.kind = check_choice("residual block kind", kind, ("same", "down", "up"))
        self.act = make_activation(activation)
        rng = np.random.default_rng(0) if rng is None else rng
        kw = dict(rng=rng, dtype=dtype, xp=xp, init=init)
        if kind == "same":
            self.conv1 = Conv2d(c_in, c_out, 3, padding=1, **kw)
            self.skip = Conv2d(c_in, c_out, 1, **kw) if c_in != c_out else None
        elif kind == "down":
            self.conv1 = Conv2d(c_in, c_out, 3, stride=2, padding=1, **kw)
            self.skip = Conv2d(c_in, c_out, 1, stride=2, **kw)
        else:
            self.conv1 = ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, **kw)
            self.skip = ConvTranspose2d(c_in, c_out, 1, stride=2, output_padding=1, **kw)
        self.conv2 = Conv2d(c_out, c_out, 3, padding=1,
                            **{**kw, "init": branch_init or init})
        parts = {"conv1": self.conv1, "conv2": self.conv2, "skip": self.skip}
        self.params = {f"{name}.{p}": v for name, layer in parts.items() if layer is not None
                       for p, v in layer.params.items()}

    def forward(self, x):
        a0, c_a0 = self.act.forward(x)
        h1, c_h1 = self.conv1.forward(a0)
        a1, c_a1 = self.act.forward(h1)
        h2, c_h2 = self.conv2.forward(a1)
        s, c_s = self.skip.forward(x) if self.skip is not None else (x, None)
        return h2 + s, (c_a0, c_h1, c_a1, c_h2, c_s)

    def backward(self, dy, cache, need_dx: bool = True):
        """``need_dx=False`` skips conv1's and the skip's dx (the block's input is data)."""
        c_a0, c_h1, c_a1, c_h2, c_s = cache
        da1, g2 = self.conv2.backward(dy, c_h2)
        dh1, _ = self.act.backward(da1, c_a1)
        da0, g1 = self.conv1.backward(dh1, c_h1, need_dx=need_dx)
        grads = {**{f"conv1.{p}": v for p, v in g1.items()},
                 **{f"conv2.{p}": v for p, v in g2.items()}}
        dx_skip = dy
        if self.skip is not None:
            dx_skip, gs = self.skip.backward(dy, c_s, need_dx=need_dx)
            grads.update({f"skip.{p}": v for p, v in gs.items()})
        if not need_dx:
            return None, grads
        dx, _ = self.act.backward(da0, c_a0)
        return dx + dx_skip, grads
