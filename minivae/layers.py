r"""Dense layers, activations and the MLP that composes them, each with a hand-written backward.

Every layer is a pair

    forward(x)          -> (y, cache)
    backward(dy, cache) -> (dx, grads)

with nothing kept on ``self`` between the two calls, so a layer can be applied
twice (the decoder on K importance samples, a finite-difference loop) without
bookkeeping.  ``dx`` is dL/dx and has x's shape; ``grads`` maps a parameter's
name to dL/dparameter (empty for activations).

Axis legend: B batch, K importance samples, I inputs, O outputs.  Inputs are
``(..., I)``: ``(B, I)`` or ``(K, B, I)``.
"""
from __future__ import annotations

import math

import numpy as np

from .backend import array_module
from .checks import InvalidInput, check_choice, check_sizes
from .parallel import for_rows


# ---------------------------------------------------------------- dense layer

class Dense:
    r"""Affine map ``y = x W + b``.

    Shapes: x ``(..., I)``, W ``(I, O)``, b ``(O,)``, y ``(..., O)``.

    Backward, with the leading axes flattened into N = prod(...) rows:

        dx = dy W^T                  (..., I)
        dW = sum_n x_n^T dy_n        (I, O)    one (I, N) x (N, O) product
        db = sum_n dy_n              (O,)

    Initialisation (Glorot & Bengio 2010, "uniform"): W ~ U(-a, a) with
    a = sqrt(6 / (I + O)), b = 0.  The draw is made on the host with NumPy so a
    seed gives the same weights on every backend.
    """

    def __init__(self, n_in: int, n_out: int, rng: np.random.Generator | None = None,
                 dtype=np.float32, xp=np):
        rng = np.random.default_rng(0) if rng is None else rng
        a = math.sqrt(6.0 / (n_in + n_out))
        self.params = {
            "W": xp.asarray(rng.uniform(-a, a, size=(n_in, n_out)), dtype=dtype),
            "b": xp.zeros(n_out, dtype=dtype),
        }

    def forward(self, x):
        W, b = self.params["W"], self.params["b"]
        x2 = x.reshape(-1, W.shape[0])              # (N, I): a view, no copy
        y = x2 @ W                                  # (N, O)
        y += b
        return y.reshape(x.shape[:-1] + (W.shape[1],)), x

    def backward(self, dy, cache, need_dx: bool = True):
        """``need_dx=False`` skips dx (the first layer's input is data): one matrix product less."""
        x = cache
        W = self.params["W"]
        x2 = x.reshape(-1, W.shape[0])              # (N, I)
        dy2 = dy.reshape(-1, W.shape[1])            # (N, O)
        grads = {"W": x2.T @ dy2, "b": dy2.sum(axis=0)}
        dx = (dy2 @ W.T).reshape(x.shape) if need_dx else None
        return dx, grads


# ---------------------------------------------------------------- activations
# Each keeps only what its derivative needs, and says why.

class Identity:
    r"""y = x;   dx = dy."""
    params: dict = {}

    def forward(self, x):
        return x, None

    def backward(self, dy, cache):
        return dy, {}


class ReLU:
    r"""y = max(x, 0);   dx = dy * [y > 0]   (keeps y: y > 0 exactly where x > 0)."""
    params: dict = {}

    def forward(self, x):
        xp = array_module(x)
        y = xp.maximum(x, 0)
        return y, y

    def backward(self, dy, cache):
        y = cache
        return dy * (y > 0), {}


class LeakyReLU:
    r"""y = x if x > 0 else alpha x;   dx = dy * (1 if x > 0 else alpha)   (keeps x)."""
    params: dict = {}

    def __init__(self, alpha: float = 0.01):
        self.alpha = alpha

    def forward(self, x):
        xp = array_module(x)
        return xp.where(x > 0, x, self.alpha * x), x

    def backward(self, dy, cache):
        xp = array_module(dy)
        x = cache
        return xp.where(x > 0, dy, self.alpha * dy), {}


class Tanh:
    r"""y = tanh(x);   dx = dy * (1 - y^2)   (keeps y: tanh' is a function of the output).

    Both run on row blocks over :func:`minivae.parallel.for_rows` (the same arithmetic per element).
    """
    params: dict = {}

    def forward(self, x):
        xp = array_module(x)
        y = xp.empty_like(x)
        for_rows(xp.tanh, (x, y))                    # y = tanh(x), in blocks of rows
        return y, y

    def backward(self, dy, cache):
        y = cache
        shape = y.shape if dy.shape == y.shape else np.broadcast_shapes(y.shape, dy.shape)
        dx = array_module(y).empty(shape, np.result_type(y.dtype, dy.dtype))
        for_rows(self._backward_rows, (dx,), (y, dy))
        return dx, {}

    @staticmethod
    def _backward_rows(dx, y, dy):
        """dx = dy (1 - y^2), one temporary: dx itself."""
        xp = array_module(y)
        xp.multiply(y, y, out=dx)
        xp.subtract(1, dx, out=dx)
        dx *= dy


def sigmoid(x):
    r"""Logistic function 1 / (1 + e^{-x}) without overflow for any x.

    With e = exp(-|x|) in (0, 1]:  sigma(x) = 1 / (1 + e) for x >= 0 and e / (1 + e) for x < 0.
    """
    xp = array_module(x)
    e = xp.exp(-xp.abs(x))                           # in (0, 1]: never overflows
    s = 1 / (1 + e)
    return xp.where(x >= 0, s, e * s)


def softplus(x):
    r"""softplus(x) = log(1 + e^x), computed as max(x, 0) + log(1 + e) with e = e^{-|x|}.

    The identity log(1 + e^x) = max(x, 0) + log(1 + e^{-|x|}) keeps every exponent <= 0, so
    nothing overflows for any x.  With e in (0, 1], 1 + e lies in (1, 2] and ``log`` of it is
    accurate to float32 rounding, except that where e is below half a unit in the last place of 1
    (|x| > 16.6 in float32) 1 + e rounds to 1 and the term is taken as 0: an absolute error of at
    most e < 6e-8 nats, far below the rounding of the result.  ``log`` rather than ``log1p``:
    NumPy's float32 log1p runs several times slower than log on CPUs without AVX-512
    (``benchmarks/kernels.py`` times both).  One new array, worked on in place.
    """
    xp = array_module(x)
    y = xp.abs(x)
    xp.negative(y, out=y)
    xp.exp(y, out=y)                                    # e = e^{-|x|} in (0, 1]
    y += 1
    xp.log(y, out=y)                                    # log(1 + e)
    y += xp.maximum(x, 0)
    return y


class Sigmoid:
    r"""y = sigma(x);   dx = dy * y (1 - y)   (keeps y)."""
    params: dict = {}

    def forward(self, x):
        y = sigmoid(x)
        return y, y

    def backward(self, dy, cache):
        y = cache
        return dy * y * (1 - y), {}


class Softplus:
    r"""y = log(1 + e^x);   dx = dy * sigma(x)   (keeps x)."""
    params: dict = {}

    def forward(self, x):
        return softplus(x), x

    def backward(self, dy, cache):
        return dy * sigmoid(cache), {}


class ELU:
    r"""y = x if x > 0 else alpha (e^x - 1);   dx = dy * (1 if x > 0 else y + alpha)   (keeps x, y).

    ``expm1`` is taken of min(x, 0) so the branch not chosen never overflows.
    """
    params: dict = {}

    def __init__(self, alpha: float = 1.0):
        self.alpha = alpha

    def forward(self, x):
        xp = array_module(x)
        y = xp.where(x > 0, x, self.alpha * xp.expm1(xp.minimum(x, 0)))
        return y, (x, y)

    def backward(self, dy, cache):
        xp = array_module(dy)
        x, y = cache
        return xp.where(x > 0, dy, dy * (y + self.alpha)), {}


ACTIVATIONS = {
    "identity": Identity, "relu": ReLU, "leaky_relu": LeakyReLU, "tanh": Tanh,
    "sigmoid": Sigmoid, "softplus": Softplus, "elu": ELU,
}


def make_activation(name: str):
    """The activation called ``name`` (one of ``ACTIVATIONS``)."""
    return ACTIVATIONS[check_choice("activation", name, ACTIVATIONS)]()


# ---------------------------------------------------------------- Sequential, MLP

class Sequential:
    r"""y = f_L(... f_1(x)) for a list of layers (dense, activations, convolutions, reshapes).

    Parameters are named ``"<name>.<param>"`` with ``names[i]`` the name of layer i (default
    ``str(i)``): ``"0.W"``, ``"2.conv1.W"``; ``self.params`` holds the very arrays the layers
    use, so an optimizer updating it in place updates the layers.

    forward(x)  -> (y, caches),  caches[i] the cache of layer i
    backward(dy, caches, need_dx=True) -> (dx, grads): the layer backwards in reverse order,
        dy_{i-1} = backward_i(dy_i, cache_i).  need_dx=False (an input that is data) stops at the
        first layer with parameters, which skips its dx, and returns dx = None.

    Every layer keeps the leading axes, so a decoder applied to z (K, B, D) returns (K, B, O)
    without knowing K: an MLP, or the convolutional networks of :mod:`minivae.conv_vae`.
    """

    def __init__(self, layers, names=None):
        self.layers = list(layers)
        self.names = list(names) if names is not None else [str(i) for i in range(len(self.layers))]
        self.params = {f"{name}.{p}": v for name, layer in zip(self.names, self.layers)
                       for p, v in layer.params.items()}
        self._first_with_params = next(
            (i for i, layer in enumerate(self.layers) if layer.params), len(self.layers))

    def forward(self, x):
        caches = []
        for layer in self.layers:
            x, cache = layer.forward(x)
            caches.append(cache)
        return x, caches

    def backward(self, dy, caches, need_dx: bool = True):
        grads = {}
        stop = 0 if need_dx else self._first_with_params
        for i in range(len(self.layers) - 1, stop - 1, -1):
            layer = self.layers[i]
            if layer.params:
                dy, g = layer.backward(dy, caches[i], need_dx=need_dx or i > stop)
                grads.update({f"{self.names[i]}.{p}": v for p, v in g.items()})
            else:
                dy, _ = layer.backward(dy, caches[i])
        return (dy if need_dx else None), grads


class MLP(Sequential):
    r"""Dense -> act -> Dense -> act -> ... -> Dense (-> out_activation), a :class:`Sequential`.

    ``sizes = (I, H1, ..., O)`` gives len(sizes) - 1 dense layers; ``activation``
    follows every dense layer except the last, ``out_activation`` follows the last.

    Parameters are named ``"<i>.W"`` and ``"<i>.b"`` for the i-th dense layer (activations are
    not counted) and live in ``self.params`` (the very arrays the layers use, so an optimizer that
    updates ``params`` in place updates the layers).

    forward(x)  -> (y, caches):  y = f_L(... f_1(x)), caches = [cache_1, ..., cache_L]
    backward(dy, caches) -> (dx, grads): the layer backwards in reverse order,
        dy_{l-1} = backward_l(dy_l, cache_l); grads collects each dense layer's dW, db.
    """

    def __init__(self, sizes, activation: str = "tanh", out_activation: str = "identity",
                 rng: np.random.Generator | None = None, dtype=np.float32, xp=np):
        sizes = check_sizes("sizes", sizes)
        if len(sizes) < 2:
            raise InvalidInput(f"sizes must hold at least an input and an output size, got "
                               f"{sizes}.")
        check_choice("activation", activation, ACTIVATIONS)
        check_choice("out_activation", out_activation, ACTIVATIONS)
        rng = np.random.default_rng(0) if rng is None else rng
        self.sizes = tuple(sizes)
        layers, names = [], []
        n_dense = len(self.sizes) - 1
        for i in range(n_dense):
            layers.append(Dense(self.sizes[i], self.sizes[i + 1], rng, dtype, xp))
            names.append(str(i))
            act = activation if i < n_dense - 1 else out_activation
            if act != "identity":
                layers.append(make_activation(act))
                names.append(f"{i}.{act}")                      # no parameters: never in a name
        super().__init__(layers, names)
