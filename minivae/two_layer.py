r"""The IWAE paper's model with two stochastic layers (Burda et al. 2016, section 5).

    inference   q(h1|x)  = N(mu1, diag(exp(lv1))),   [mu1, lv1] = q1(x)      x (B, P) -> (B, 2 D1)
                q(h2|h1) = N(mu2, diag(exp(lv2))),   [mu2, lv2] = q2(h1)     h1 (K, B, D1) -> (K, B, 2 D2)
    generative  p(h2)    = N(0, I)
                p(h1|h2) = N(mup, diag(exp(lvp))),   [mup, lvp] = p1(h2)     h2 (K, B, D2) -> (K, B, 2 D1)
                p(x|h1)  = likelihood(px(h1))                                h1 -> (K, B, O)

with h1 = mu1 + exp(lv1/2) eps1 and h2 = mu2 + exp(lv2/2) eps2; one sample's noise is
eps = [eps1, eps2], (K, B, D1 + D2).  The importance weight is

    log w = log p(x|h1) + beta [ log p(h1|h2) + log p(h2) - log q(h1|x) - log q(h2|h1) ],

and the objectives are those of :mod:`minivae.objectives` on log w.  For ``"elbo"`` the h2 part is
integrated in closed form given h1:  E_q(h2|h1)[log p(h2) - log q(h2|h1)] = -KL(q(h2|h1) || N(0, I)).

Paper sizes: D1 = 100, D2 = 50, x <-> h1 networks 2 x 200 tanh, h1 <-> h2 networks 2 x 100 tanh.
"""
from __future__ import annotations

from . import gaussian as G
from . import objectives as obj
from .backend import Backend
from .layers import MLP
from .model import LatentVariableModel


class TwoLayerVAE(LatentVariableModel):
    r"""Two stochastic layers h1 (D1 units) and h2 (D2 units); see the module docstring.

    Parameters are named ``"q1.*"``, ``"q2.*"`` (inference), ``"p1.*"``, ``"px.*"`` (generative).
    """

    def __init__(self, x_dim: int = 784, h1_dim: int = 100, h2_dim: int = 50,
                 x_hidden=(200, 200), h_hidden=(100, 100), activation: str = "tanh",
                 likelihood: str = "bernoulli", sigma: float = 1.0, dtype: str = "float32",
                 seed: int = 0, backend: str | Backend = "numpy"):
        rng = self._setup(backend, seed, dtype, likelihood, sigma)
        self.config = dict(x_dim=int(x_dim), h1_dim=int(h1_dim), h2_dim=int(h2_dim),
                           x_hidden=[int(h) for h in x_hidden], h_hidden=[int(h) for h in h_hidden],
                           activation=activation, likelihood=likelihood, sigma=float(sigma),
                           dtype=self.dtype.name, seed=int(seed))
        self.x_dim, self.h1_dim, self.h2_dim = int(x_dim), int(h1_dim), int(h2_dim)
        self.latent_dim = self.h1_dim                   # what encode / decode speak
        self.eps_dim = self.h1_dim + self.h2_dim
        kw = dict(rng=rng, dtype=self.dtype, xp=self.xp)
        self.q1 = MLP([x_dim, *x_hidden, 2 * h1_dim], activation, **kw)
        self.q2 = MLP([h1_dim, *h_hidden, 2 * h2_dim], activation, **kw)
        self.p1 = MLP([h2_dim, *h_hidden[::-1], 2 * h1_dim], activation, **kw)
        self.px = MLP([h1_dim, *x_hidden[::-1], self.likelihood.n_outputs(x_dim)], activation, **kw)
        self.output_layer = f"px.{len(self.px.sizes) - 2}.b"
        self._finish_init({"q1": self.q1, "q2": self.q2, "p1": self.p1, "px": self.px})

    @staticmethod
    def _split(h):
        D = h.shape[-1] // 2
        return h[..., :D], h[..., D:]

    # ------------------------------------------------------------ inference and generation
    def encode(self, x):
        """(mu1, lv1) of q(h1 | x), each (B, D1)."""
        return self._split(self.q1.forward(self._check_x(x))[0])

    def decode(self, h1):
        """E[x | h1], the mean of p(x | h1)."""
        return self.likelihood.mean(self.px.forward(h1.astype(self.dtype, copy=False))[0])

    def reconstruct(self, x):
        return self.decode(self.encode(x)[0])

    def sample(self, n: int, rng=None):
        """h2 ~ N(0, I), h1 ~ p(h1 | h2), decoded to E[x | h1], (n, P)."""
        rng = self.backend.rng if rng is None else rng
        h2 = rng.standard_normal((n, self.h2_dim), dtype=self.dtype)
        mup, lvp = self._split(self.p1.forward(h2)[0])
        h1, _ = G.reparameterize_forward(mup, lvp, rng.standard_normal(mup.shape, dtype=self.dtype))
        return self.decode(h1)

    def latent_means(self, x, rng=None, n_samples: int = 100):
        r"""[E_q[h1], E_q[h2]] per example: mu1(x), and mean_s mu2(h1_s) over h1_s ~ q(h1|x)."""
        rng = self.backend.generator(5) if rng is None else rng
        mu1, lv1 = self.encode(x)
        eps1 = rng.standard_normal((n_samples,) + mu1.shape, dtype=self.dtype)
        h1, _ = G.reparameterize_forward(mu1, lv1, eps1)
        mu2, _ = self._split(self.q2.forward(h1)[0])
        return [mu1, mu2.mean(axis=0)]

    # ------------------------------------------------------------ the bound and its gradient
    def forward(self, x, objective: str = "elbo", k: int = 1, beta: float = 1.0, eps=None, rng=None):
        r"""The bound per example (B,) with everything backward needs; see the module docstring."""
        x, eps = self._prepare(x, objective, k, eps, rng)
        log_w, cache, stats = self._log_w(x, eps, objective, beta)
        if objective == "iwae":
            bound, cache["obj"] = obj.iwae_forward(log_w)
        else:                                                            # elbo, mc_elbo: mean over K
            bound, cache["obj"] = obj.mc_elbo_forward(log_w)
        return bound, cache, stats

    def log_weights(self, x, eps):
        r"""log w (K, B) for noise eps (K, B, D1 + D2), forward only."""
        x = self._check_x(x)
        return self._log_w(x, self._check_eps(eps, eps.shape[0], x.shape[0]), "mc_elbo", 1.0)[0]

    def _log_w(self, x, eps, objective, beta):
        r"""log w (K, B), the cache for backward, and stats; for "elbo" log p(h2) - log q(h2|h1) -> -KL."""
        D1 = self.h1_dim
        hq1, c_q1 = self.q1.forward(x)                                  # (B, 2 D1)
        mu1, lv1 = self._split(hq1)
        h1, c_r1 = G.reparameterize_forward(mu1, lv1, eps[..., :D1])    # (K, B, D1)
        hq2, c_q2 = self.q2.forward(h1)                                 # (K, B, 2 D2)
        mu2, lv2 = self._split(hq2)
        h2, c_r2 = G.reparameterize_forward(mu2, lv2, eps[..., D1:])    # (K, B, D2)
        hp1, c_p1 = self.p1.forward(h2)                                 # (K, B, 2 D1)
        mup, lvp = self._split(hp1)
        out, c_px = self.px.forward(h1)                                 # (K, B, O)

        log_px, c_lik = self.likelihood.forward(x, out)                 # (K, B)
        log_p1, c_lp1 = G.log_normal_forward(h1, mup, lvp)              # log p(h1|h2)
        log_q1, c_lq1 = G.log_normal_forward(h1, mu1, lv1)              # log q(h1|x)
        cache = dict(objective=objective, beta=beta, q1=c_q1, r1=c_r1, q2=c_q2, r2=c_r2,
                     p1=c_p1, px=c_px, lik=c_lik, lp1=c_lp1, lq1=c_lq1)
        if objective == "elbo":                                          # h2 in closed form
            kl2, cache["kl2"] = G.kl_normal_std_forward(mu2, lv2)        # (K, B)
            latent = log_p1 - log_q1 - kl2
        else:
            log_p2, cache["lp2"] = G.log_std_normal_forward(h2)
            log_q2, cache["lq2"] = G.log_normal_forward(h2, mu2, lv2)
            latent = log_p1 + log_p2 - log_q1 - log_q2
        log_w = log_px + beta * latent                                   # (K, B)
        stats = {"kl": -latent.mean(), "recon": -log_px.mean()}
        return log_w, cache, stats

    def backward(self, dbound, cache):
        r"""Gradients of sum_b dbound_b L(x_b), the forward in reverse.

        1. objective:  dlog_w (K, B); dlog p(x|h1) = dlog_w, d(latent terms) = +-beta dlog_w
        2. p(x|h1):    dout -> px backward -> dh1
        3. p(h1|h2):   dh1, dmup, dlvp -> p1 backward -> dh2
        4. q(h1|x):    dh1 += dz part; dmu1, dlv1 from the density
        5. h2 terms:   [elbo] dmu2, dlv2 from -KL;  [else] dh2 += from log p(h2) and log q(h2|h1),
                       dmu2, dlv2 from log q(h2|h1)
        6. h2 = mu2 + sigma2 eps2:  dmu2 += dh2,  dlv2 += dh2 eps2 sigma2 / 2  -> q2 backward -> dh1
        7. h1 = mu1 + sigma1 eps1:  dmu1 += sum_K dh1, dlv1 += sum_K dh1 eps1 sigma1 / 2 -> q1 backward
        """
        xp, beta = self.xp, cache["beta"]
        if cache["objective"] == "iwae":
            dlog_w = obj.iwae_backward(dbound, cache["obj"])
        else:
            dlog_w = obj.mc_elbo_backward(dbound, cache["obj"])
        d_lat = beta * dlog_w                                             # (K, B)

        dh1, g_px = self.px.backward(self.likelihood.backward(dlog_w, cache["lik"]), cache["px"])
        dh1_p, dmup, dlvp = G.log_normal_backward(d_lat, cache["lp1"])
        dh2, g_p1 = self.p1.backward(xp.concatenate([dmup, dlvp], axis=-1), cache["p1"])
        dh1 += dh1_p
        dh1_q, dmu1, dlv1 = G.log_normal_backward(-d_lat, cache["lq1"])
        dh1 += dh1_q

        if cache["objective"] == "elbo":
            dmu2, dlv2 = G.kl_normal_std_backward(-d_lat, cache["kl2"])
        else:
            dh2 += G.log_std_normal_backward(d_lat, cache["lp2"])
            dh2_q, dmu2, dlv2 = G.log_normal_backward(-d_lat, cache["lq2"])
            dh2 += dh2_q
        dmu2_r, dlv2_r = G.reparameterize_backward(dh2, cache["r2"])
        dh1_q2, g_q2 = self.q2.backward(xp.concatenate([dmu2 + dmu2_r, dlv2 + dlv2_r], axis=-1),
                                        cache["q2"])
        dh1 += dh1_q2
        dmu1_r, dlv1_r = G.reparameterize_backward(dh1, cache["r1"])
        _, g_q1 = self.q1.backward(xp.concatenate([dmu1 + dmu1_r, dlv1 + dlv1_r], axis=-1),
                                   cache["q1"], need_dx=False)

        grads = {}
        for net, g in (("q1", g_q1), ("q2", g_q2), ("p1", g_p1), ("px", g_px)):
            grads.update({f"{net}.{n}": v for n, v in g.items()})
        return grads
