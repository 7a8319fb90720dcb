r"""Optimizers over named parameters, updating them in place.

Each optimizer keeps its state per parameter name, updates ``params[name]`` in
place from ``grads[name]`` (so every layer that holds the array sees the new
values), and can save and restore its state for checkpoints.  The learning rate
``lr`` is an attribute: a schedule sets it between steps.

    opt = Adam(lr=1e-3, eps=1e-4)
    loss, grads, _ = model.loss_and_grads(x)
    opt.step(model.params, grads)
"""
from __future__ import annotations

import inspect
import math
import numbers

import numpy as np

from .backend import array_module
from .checks import InvalidInput, InvalidInputType, check_choice, check_positive, check_real


def check_lr(lr) -> float:
    """``lr`` as a finite float > 0, or one clear error (at construction and at every step)."""
    return check_positive("lr", lr, "lr is the learning rate, e.g. 1e-3")


def check_decay(name: str, value) -> float:
    """A decay rate (momentum, Adam's beta1 and beta2) as a float in [0, 1)."""
    return check_real(name, value, 0.0, 1.0, high_open=True,
                      fix="it is a decay rate such as 0.9 (0 for none; 1 would never forget)")


class Optimizer:
    """Shared state handling: ``self.state[slot][name]`` arrays plus a step counter ``t``."""
    slots: tuple = ()

    def __init__(self, lr: float):
        self.lr = check_lr(lr)
        self.t = 0
        self.state = {slot: {} for slot in self.slots}
        self._work = {}                                  # scratch arrays, not part of the state

    def _slot(self, slot, name, p, fill=0.0):
        s = self.state[slot]
        if name not in s:
            s[name] = array_module(p).full(p.shape, fill, dtype=p.dtype)
        return s[name]

    def _scratch(self, name, p):
        """A work array shaped like ``p``, kept between steps (not part of the saved state)."""
        if name not in self._work or self._work[name].shape != p.shape:
            self._work[name] = array_module(p).empty_like(p)
        return self._work[name]

    def _check_step(self, params, grads) -> None:
        """The learning rate a schedule set, and grads against params: names and shapes (host
        metadata only, a few microseconds a step)."""
        check_lr(self.lr)
        for name, g in grads.items():
            p = params.get(name)
            if p is None:
                raise InvalidInput(f"grads has {name!r} but params has no parameter of that name: "
                                   f"pass the model's params and the grads computed for them.")
            if g.shape != p.shape:
                raise InvalidInput(f"The gradient of {name!r} has shape {g.shape} but the "
                                   f"parameter has shape {p.shape}: pass the grads computed for "
                                   f"these params.")

    def step(self, params, grads) -> None:
        self._check_step(params, grads)
        self.t += 1
        for name, g in grads.items():
            self._update(name, params[name], g)

    def _update(self, name, p, g) -> None:
        raise NotImplementedError

    def hyperparameters(self) -> dict:
        return {"lr": self.lr}

    def state_dict(self) -> dict:
        """``{"t": int, "hyper": {...}, "arrays": {"slot/name": array}}`` for a checkpoint."""
        arrays = {f"{slot}/{name}": a for slot, d in self.state.items() for name, a in d.items()}
        return {"type": type(self).__name__, "t": self.t, "hyper": self.hyperparameters(),
                "arrays": arrays}

    def load_state_dict(self, state: dict, xp=np, params=None) -> None:
        r"""Restore what :meth:`state_dict` returned, on array module ``xp``, checking it first.

        ``t`` must be an integer >= 0; ``hyper`` may set only this optimizer's hyperparameters
        (finite; lr and eps above 0, beta1, beta2 and momentum in [0, 1)); every array must be a
        float32 or float64 ``"<slot>/<name>"`` of a slot this optimizer keeps, and finite.  With
        ``params`` (name -> array), each array must name a parameter and have its shape, and after
        ``t`` > 0 steps every slot the optimizer fills at each step must hold every parameter: a
        state with arrays missing would silently resume as if fresh.  Raises ValueError saying
        what is wrong, and then changes nothing.
        """
        kind = type(self).__name__
        if not isinstance(state, dict):
            raise ValueError(f"{kind} state must be a dict, got {type(state).__name__}")
        if state.get("type", kind) != kind:
            raise ValueError(f"the state is for {state['type']}, not {kind}")
        t = state.get("t")
        if not isinstance(t, numbers.Integral) or isinstance(t, bool) or t < 0:
            raise ValueError(f"{kind}'s step count t must be an integer of at least 0, got {t!r}")
        hyper, known = state.get("hyper", {}), self.hyperparameters()
        if not isinstance(hyper, dict):
            raise ValueError(f"{kind}'s hyperparameters must be a dict, got {hyper!r}")
        ranges = {"lr": ("above 0", lambda v: v > 0), "eps": ("above 0", lambda v: v > 0),
                  "beta1": ("in [0, 1)", lambda v: 0 <= v < 1),
                  "beta2": ("in [0, 1)", lambda v: 0 <= v < 1),
                  "momentum": ("in [0, 1)", lambda v: 0 <= v < 1)}
        for key, value in hyper.items():
            if key not in known:
                raise ValueError(f"{kind} has no hyperparameter {key!r} (it has "
                                 f"{', '.join(known)})")
            rule, ok = ranges.get(key, ("finite", lambda v: True))
            if (not isinstance(value, numbers.Real) or isinstance(value, bool)
                    or not math.isfinite(value) or not ok(value)):
                raise ValueError(f"{kind}'s {key} must be a finite number {rule}, got {value!r}")

        arrays = state.get("arrays", {})
        for key, a in arrays.items():
            slot, _, name = key.partition("/")
            if slot not in self.slots or not name:
                raise ValueError(f"{kind} keeps {', '.join(self.slots) or 'no state'}, not {key!r}")
            if a.dtype.kind != "f" or a.dtype.itemsize not in (4, 8):
                raise ValueError(f"{kind} state {key} is {a.dtype}, not float32 or float64")
            if params is not None and name not in params:
                raise ValueError(f"{kind} state {key} is for {name!r}, which is not a parameter")
            if params is not None and tuple(a.shape) != tuple(params[name].shape):
                raise ValueError(f"{kind} state {key} has shape {tuple(a.shape)}, but parameter "
                                 f"{name} has {tuple(params[name].shape)}")
            if not bool(array_module(a).isfinite(a).all()):
                raise ValueError(f"{kind} state {key} holds NaN or infinite values")
        momentum = hyper.get("momentum", getattr(self, "momentum", None))
        filled = () if momentum == 0.0 else self.slots    # SGD without momentum keeps nothing
        if t > 0 and filled:
            names = list(params) if params is not None else []
            missing = [f"{s}/{n}" for s in filled for n in names if f"{s}/{n}" not in arrays]
            if missing or not arrays:
                what = (f"{len(missing)} of its arrays ({', '.join(missing[:3])}"
                        f"{', ...' if len(missing) > 3 else ''})" if missing else "all its arrays")
                raise ValueError(f"{kind} state after {t} steps lacks {what}: it would resume "
                                 "as if fresh")

        self.t = int(t)
        for key, value in hyper.items():
            setattr(self, key, float(value))
        self.state = {slot: {} for slot in self.slots}
        for key, a in arrays.items():
            slot, name = key.split("/", 1)
            self.state[slot][name] = xp.array(a)


class SGD(Optimizer):
    r"""Stochastic gradient descent with (heavy-ball) momentum mu:

        v <- mu v + g;    p <- p - lr v          (plain SGD when mu = 0)
    """
    slots = ("velocity",)

    def __init__(self, lr: float = 1e-2, momentum: float = 0.0):
        super().__init__(lr)
        self.momentum = check_decay("momentum", momentum)

    def hyperparameters(self):
        return {"lr": self.lr, "momentum": self.momentum}

    def _update(self, name, p, g):
        if self.momentum == 0.0:
            p -= self.lr * g
            return
        v = self._slot("velocity", name, p)
        v *= self.momentum
        v += g
        p -= self.lr * v


class Adam(Optimizer):
    r"""Adam (Kingma & Ba 2015), Algorithm 1:

        m <- b1 m + (1 - b1) g;        v <- b2 v + (1 - b2) g^2
        p <- p - lr * m_hat / (sqrt(v_hat) + eps),  m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t)

    computed in the paper's equivalent form with the bias corrections folded into
    two scalars:  p <- p - lr_t m / (sqrt(v) + eps_t),  lr_t = lr sqrt(1 - b2^t) / (1 - b1^t),
    eps_t = eps sqrt(1 - b2^t).  ``eps`` = 1e-4 in the IWAE paper (PyTorch's default is 1e-8).

    On NumPy each update is the dozen in-place array operations of ``_update`` below.  On CuPy
    the same arithmetic, in the same order, runs as one CUDA kernel per parameter
    (``_ADAM_SOURCE``, compiled by ``_adam_kernel``): a GPU step of a small model is bound by
    kernel launches, so one launch per parameter instead of twelve is what counts there
    (benchmarks/README.md measures it).
    """
    slots = ("m", "v")

    def __init__(self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8):
        super().__init__(lr)
        self.beta1, self.beta2 = check_decay("beta1", beta1), check_decay("beta2", beta2)
        self.eps = check_positive("eps", eps, "eps keeps the denominator above 0, e.g. 1e-8 (1e-4 "
                                              "in the IWAE paper)")

    def hyperparameters(self):
        return {"lr": self.lr, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}

    def step(self, params, grads):
        self._check_step(params, grads)
        self.t += 1
        c2 = math.sqrt(1.0 - self.beta2 ** self.t)
        self._lr_t = self.lr * c2 / (1.0 - self.beta1 ** self.t)
        self._eps_t = self.eps * c2
        for name, g in grads.items():
            self._update(name, params[name], g)

    def _update(self, name, p, g):
        xp = array_module(p)
        m, v = self._slot("m", name, p), self._slot("v", name, p)
        if xp is not np:                               # CuPy: the lines below as one kernel
            _adam_kernel(xp)(g, 1.0 - self.beta1, 1.0 - self.beta2, self._lr_t, self._eps_t,
                             p, m, v)
            return
        t = self._scratch(name, p)                     # reused each step: no allocations
        xp.subtract(g, m, out=t)
        t *= 1.0 - self.beta1
        m += t                                         # m <- b1 m + (1 - b1) g
        xp.multiply(g, g, out=t)
        t -= v
        t *= 1.0 - self.beta2
        v += t                                         # v <- b2 v + (1 - b2) g^2
        xp.sqrt(v, out=t)
        t += self._eps_t
        xp.divide(m, t, out=t)
        t *= self._lr_t
        p -= t                                         # p <- p - lr_t m / (sqrt(v) + eps_t)


# Adam's update for one parameter as a CuPy elementwise kernel: per element, the arithmetic of
# Adam._update in the same order (T is the parameters' dtype; p, m, v are updated in place).
_ADAM_SOURCE = """
    T t = (g - m) * (T)one_minus_b1;   m += t;         // m <- b1 m + (1 - b1) g
    t = (g * g - v) * (T)one_minus_b2; v += t;         // v <- b2 v + (1 - b2) g^2
    p -= (m / (sqrt(v) + (T)eps_t)) * (T)lr_t;         // p <- p - lr_t m / (sqrt(v) + eps_t)
"""
_adam_kernels = {}


def _adam_kernel(xp):
    """The compiled kernel for array module ``xp`` (CuPy), built on first use."""
    if xp not in _adam_kernels:
        _adam_kernels[xp] = xp.ElementwiseKernel(
            "T g, float64 one_minus_b1, float64 one_minus_b2, float64 lr_t, float64 eps_t",
            "T p, T m, T v", _ADAM_SOURCE, "minivae_adam_update")
    return _adam_kernels[xp]


class Adagrad(Optimizer):
    r"""Adagrad (Duchi et al. 2011), Kingma & Welling's optimizer:

        G <- G + g^2;    p <- p - lr g / (sqrt(G) + eps)
    """
    slots = ("sum_sq",)

    def __init__(self, lr: float = 1e-2, eps: float = 1e-10):
        super().__init__(lr)
        self.eps = check_positive("eps", eps, "eps keeps the denominator above 0, e.g. 1e-10")

    def hyperparameters(self):
        return {"lr": self.lr, "eps": self.eps}

    def _update(self, name, p, g):
        xp = array_module(p)
        G = self._slot("sum_sq", name, p)
        G += g * g
        denom = xp.sqrt(G)
        denom += self.eps
        xp.divide(g, denom, out=denom)
        denom *= self.lr
        p -= denom


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adagrad": Adagrad}


def make_optimizer(name: str, **kwargs) -> Optimizer:
    """The optimizer called ``name`` (``"sgd"``, ``"adam"``, ``"adagrad"``) with ``kwargs``."""
    cls = OPTIMIZERS[check_choice("optimizer", name, OPTIMIZERS)]
    known = list(inspect.signature(cls).parameters)
    for key in kwargs:
        if key not in known:
            raise InvalidInputType(f"{cls.__name__} has no hyperparameter {key!r}: it takes "
                                   f"{', '.join(known)}.")
    return cls(**kwargs)
