r"""The PyTorch peer: minivae's models written the way a PyTorch user writes them, for the benchmark.

Same model, term by term (``tests/test_benchmarks.py`` checks the loss and every gradient agree):

    encoder  x (B, P) -> Linear/act ... -> Linear -> h (B, 2D) = [mu, logvar]
    sample   z = mu + exp(logvar / 2) * eps,        eps (K, B, D) drawn by the caller
    decoder  z (K, B, D) -> Linear/act ... -> Linear -> logits (K, B, P)
    log p(x|z) = -sum_P BCEWithLogits(logits, x)    (Bernoulli on logits; x broadcast over K)
    elbo:  L = mean_K log p(x|z) - KL(N(mu, sigma^2) || N(0, I))          (analytic KL)
    iwae:  log w = log p(x|z) + log N(z; 0, I) - log N(z; mu, sigma^2),   L = logsumexp_K log w - log K
    loss = -mean_B L,   torch.optim.Adam(lr, betas, eps)

The initial weights are copied from a minivae model (minivae's W is (in, out), a torch
``Linear.weight`` is (out, in)), so both libraries start from the same Glorot draw.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LOG_2PI = math.log(2.0 * math.pi)
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


def mlp(sizes, activation: str) -> nn.Sequential:
    """Linear -> act -> ... -> Linear (no activation after the last), like minivae's MLP."""
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class TorchVAE(nn.Module):
    """Gaussian encoder, Bernoulli decoder on logits; ``bound(x, eps, objective)`` per example."""

    def __init__(self, x_dim=784, latent_dim=50, encoder_hidden=(200, 200), decoder_hidden=(200, 200),
                 activation="tanh"):
        super().__init__()
        self.x_dim, self.latent_dim = int(x_dim), int(latent_dim)
        self.encoder = mlp([x_dim, *encoder_hidden, 2 * latent_dim], activation)
        self.decoder = mlp([latent_dim, *decoder_hidden, x_dim], activation)

    @classmethod
    def from_minivae(cls, model, device="cpu") -> "TorchVAE":
        """The same architecture as the minivae ``model``, starting from its weights."""
        c = model.config
        if c["likelihood"] != "bernoulli":
            raise ValueError("the PyTorch peer has the Bernoulli decoder only")
        net = cls(c["x_dim"], c["latent_dim"], c["encoder_hidden"], c["decoder_hidden"],
                  c["activation"])
        net.load_minivae(model.params)
        return net.to(device)

    def load_minivae(self, params) -> None:
        """Copy minivae's ``"<net>.<i>.W"`` (in, out) and ``"<net>.<i>.b"`` into the Linears."""
        from minivae.backend import to_host
        with torch.no_grad():
            for name, seq in (("encoder", self.encoder), ("decoder", self.decoder)):
                linears = [m for m in seq if isinstance(m, nn.Linear)]
                for i, lin in enumerate(linears):
                    W = np.ascontiguousarray(to_host(params[f"{name}.{i}.W"]).T)   # (out, in)
                    lin.weight.copy_(torch.from_numpy(W))
                    lin.bias.copy_(torch.from_numpy(to_host(params[f"{name}.{i}.b"])))

    def minivae_grads(self) -> dict:
        """The gradients under minivae's names and layouts (W as (in, out)), as NumPy arrays."""
        out = {}
        for name, seq in (("encoder", self.encoder), ("decoder", self.decoder)):
            linears = [m for m in seq if isinstance(m, nn.Linear)]
            for i, lin in enumerate(linears):
                out[f"{name}.{i}.W"] = lin.weight.grad.detach().cpu().numpy().T
                out[f"{name}.{i}.b"] = lin.bias.grad.detach().cpu().numpy()
        return out

    def _terms(self, x, eps):
        D = self.latent_dim
        h = self.encoder(x)                                          # (B, 2D)
        mu, logvar = h[:, :D], h[:, D:]
        z = mu + torch.exp(0.5 * logvar) * eps                       # (K, B, D)
        logits = self.decoder(z)                                     # (K, B, P)
        log_px_z = -F.binary_cross_entropy_with_logits(
            logits, x.expand_as(logits), reduction="none").sum(-1)   # (K, B)
        return mu, logvar, z, log_px_z

    def log_weights(self, x, eps):
        """log w = log p(x|z) + log N(z; 0, I) - log N(z; mu, sigma^2),  (K, B)."""
        mu, logvar, z, log_px_z = self._terms(x, eps)
        D = self.latent_dim
        log_pz = -0.5 * ((z * z).sum(-1) + D * LOG_2PI)
        log_qz = -0.5 * (((z - mu) ** 2 * torch.exp(-logvar)).sum(-1) + logvar.sum(-1) + D * LOG_2PI)
        return log_px_z + log_pz - log_qz

    def bound(self, x, eps, objective: str = "elbo"):
        """The bound per example (B,): ``"elbo"`` (analytic KL), ``"iwae"`` or ``"mc_elbo"``."""
        if objective == "elbo":
            mu, logvar, _, log_px_z = self._terms(x, eps)
            kl = 0.5 * (torch.exp(logvar) + mu * mu - 1 - logvar).sum(-1)
            return log_px_z.mean(0) - kl
        log_w = self.log_weights(x, eps)
        if objective == "iwae":
            return torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])
        if objective == "mc_elbo":
            return log_w.mean(0)
        raise ValueError(f"unknown objective {objective!r}")

    def loss(self, x, eps, objective: str = "elbo"):
        """-mean_B L(x_b), nats per example: minivae's ``loss_and_grads`` loss."""
        return -self.bound(x, eps, objective).mean()


def make_adam(net: TorchVAE, eps: float, lr: float = 1e-3) -> torch.optim.Adam:
    """torch.optim.Adam with minivae's defaults (betas 0.9, 0.999) and the workload's eps."""
    return torch.optim.Adam(net.parameters(), lr=lr, betas=(0.9, 0.999), eps=eps)


def train_step(net, opt, xb, eps, objective):
    """One Adam step on the batch; returns the loss as a 0-d tensor (no host sync)."""
    loss = net.loss(xb, eps, objective)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


@torch.no_grad()
def log_likelihood(net: TorchVAE, x, k: int = 5000, generator=None, max_rows: int | None = None):
    r"""L_k per example (N,) as float64 NumPy, chunked exactly like minivae.evaluate.log_likelihood:
    ``b`` images and ``chunk`` samples at a time (b * chunk <= max_rows), merged by logaddexp."""
    from benchmarks.workloads import LL_MAX_ROWS, ll_batching
    N, D = x.shape[0], net.latent_dim
    b, chunk = ll_batching(N, k, max_rows or LL_MAX_ROWS)
    out = []
    for start in range(0, N, b):
        xb = x[start:start + b]
        log_sum = None                                                # log sum_i w_i, (B,)
        for s in range(0, k, chunk):
            c = min(chunk, k - s)
            eps = torch.randn((c, xb.shape[0], D), generator=generator, device=x.device)
            part = torch.logsumexp(net.log_weights(xb, eps), 0)
            log_sum = part if log_sum is None else torch.logaddexp(log_sum, part)
        out.append(log_sum.double() - math.log(k))
    return torch.cat(out).cpu().numpy()
