r"""The PyTorch peer of minivae's ConvVAE, for ``benchmarks/conv.py``: the same networks, layer by layer.

``TorchConvVAE.from_minivae(model)`` walks the minivae model's two Sequential networks, makes each
layer's PyTorch twin and copies its parameters (``tests/test_benchmarks_conv.py`` checks that the
loss and every gradient agree):

    minivae                                        PyTorch                               weights
    Conv2d           W (C_out, C_in, kh, kw)       nn.Conv2d (stride, padding)           as they are
    ConvTranspose2d  W (C_in, C_out, kh, kw)       nn.ConvTranspose2d (+ output_padding) as they are
    Dense            W (I, O)                      nn.Linear, weight (O, I)              transposed
    ResidualBlock    skip(x) + conv2(act(conv1(act(x))))   ResidualBlock below           conv by conv
    Bias             b (O,), one per output        OutputBias below                      as it is
    Unflatten        (..., C H W) -> (..., C, H, W)   nn.Unflatten(1, (C, H, W))         CHW order
    Flatten          (..., C, H, W) -> (..., C H W)   nn.Flatten(1)                      CHW order
    activations                                    nn.ReLU, nn.Tanh, ...

minivae's layers take any leading axes; PyTorch's convolutions take (N, C, H, W), so the decoder
reads z (K, B, D) as K B rows and gives the logits back as (K, B, O) (:class:`LeadingAxes`), as a
PyTorch user would write it.  The bound (Bernoulli on logits, the analytic KL or the log-weights)
and the loss are :class:`benchmarks.peer_torch.TorchVAE`'s, unchanged.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from benchmarks.peer_torch import TorchVAE


def _activation(layer) -> nn.Module:
    """The torch module computing the same function as the minivae activation ``layer``."""
    name = type(layer).__name__
    if name in ("LeakyReLU", "ELU"):
        return getattr(nn, name)(layer.alpha)
    if name in ("ReLU", "Tanh", "Sigmoid", "Identity"):
        return getattr(nn, name)()
    raise ValueError(f"the PyTorch peer has no twin for minivae's {name}")


class ResidualBlock(nn.Module):
    r"""y = skip(x) + conv2(act(conv1(act(x)))), skip = x when there is no 1x1 convolution:
    :class:`minivae.conv.ResidualBlock` (pre-activation, He et al. 2016)."""

    def __init__(self, conv1, conv2, skip, act):
        super().__init__()
        self.conv1, self.conv2, self.skip, self.act = conv1, conv2, skip, act

    def forward(self, x):
        h = self.conv2(self.act(self.conv1(self.act(x))))
        return h + (self.skip(x) if self.skip is not None else x)


class OutputBias(nn.Module):
    r"""y = x + b, b ``shape``: :class:`minivae.conv.Bias` (one bias per output element)."""

    def __init__(self, shape, **factory):
        super().__init__()
        self.b = nn.Parameter(torch.zeros(shape, **factory))

    def forward(self, x):
        return x + self.b


class LeadingAxes(nn.Module):
    r"""``net`` on x (..., F): the leading axes flattened into rows, and restored on the output."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        y = self.net(x.reshape(-1, x.shape[-1]))
        return y.reshape(*x.shape[:-1], y.shape[-1])


def _twin(layer, prefix: str, links: list, factory: dict) -> nn.Module:
    """The torch module for one minivae layer, made with ``factory`` (device, dtype); appends
    (minivae name, torch parameter, transposed) to ``links`` for each parameter, so that weights
    go one way and gradients the other."""
    from minivae import conv as C
    from minivae.layers import Dense
    if isinstance(layer, C.Conv2d):
        m = nn.Conv2d(layer.c_in, layer.c_out, layer.kernel, layer.stride, layer.padding, **factory)
    elif isinstance(layer, C.ConvTranspose2d):
        m = nn.ConvTranspose2d(layer.c_in, layer.c_out, layer.kernel, layer.stride, layer.padding,
                               layer.output_padding, **factory)
    elif isinstance(layer, Dense):
        n_in, n_out = layer.params["W"].shape
        m = nn.Linear(n_in, n_out, **factory)
        links += [(prefix + "W", m.weight, True), (prefix + "b", m.bias, False)]
        return m
    elif isinstance(layer, C.ResidualBlock):
        parts = {name: _twin(getattr(layer, name), f"{prefix}{name}.", links, factory)
                 if getattr(layer, name) is not None else None for name in ("conv1", "conv2", "skip")}
        return ResidualBlock(**parts, act=_activation(layer.act))
    elif isinstance(layer, C.Bias):
        m = OutputBias(tuple(layer.params["b"].shape), **factory)
        links.append((prefix + "b", m.b, False))
        return m
    elif isinstance(layer, C.Flatten):
        return nn.Flatten(1)
    elif isinstance(layer, C.Unflatten):
        return nn.Unflatten(1, layer.out_shape)
    else:
        return _activation(layer)
    links += [(prefix + "W", m.weight, False), (prefix + "b", m.bias, False)]
    return m


class TorchConvVAE(TorchVAE):
    """minivae's ConvVAE in PyTorch: :meth:`from_minivae` builds it; the bound is TorchVAE's."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, x_dim: int, latent_dim: int,
                 links: list):
        nn.Module.__init__(self)                 # TorchVAE's own __init__ builds MLPs: not these
        self.x_dim, self.latent_dim = int(x_dim), int(latent_dim)
        self.encoder, self.decoder = encoder, LeadingAxes(decoder)
        self._links = links                      # [(minivae name, parameter, transposed)]

    @classmethod
    def from_minivae(cls, model, device="cpu", dtype=torch.float32) -> "TorchConvVAE":
        """The same networks as the minivae ConvVAE ``model``, with its weights, as ``dtype``."""
        if model.config["likelihood"] != "bernoulli":
            raise ValueError("the PyTorch peer has the Bernoulli decoder only")
        links, nets, factory = [], {}, {"device": device, "dtype": dtype}
        for name in ("encoder", "decoder"):
            seq = getattr(model, name)
            nets[name] = nn.Sequential(*[_twin(layer, f"{name}.{i}.", links, factory)
                                         for i, layer in enumerate(seq.layers)])
        net = cls(nets["encoder"], nets["decoder"], model.x_dim, model.latent_dim, links)
        net.load_minivae(model.params)
        return net

    def load_minivae(self, params) -> None:
        """Copy minivae's parameters in (Dense W transposed to Linear's (out, in))."""
        from minivae.backend import to_host
        if sorted(params) != sorted(name for name, _, _ in self._links):
            raise ValueError("the minivae parameters do not match the PyTorch peer's")
        with torch.no_grad():
            for name, p, transposed in self._links:
                a = to_host(params[name])
                p.copy_(torch.from_numpy(np.ascontiguousarray(a.T if transposed else a)))

    def minivae_grads(self) -> dict:
        """The gradients under minivae's names and layouts, as NumPy arrays."""
        return {name: (lambda g: g.T if transposed else g)(p.grad.detach().cpu().numpy())
                for name, p, transposed in self._links}
