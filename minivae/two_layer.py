r"""The IWAE paper's model with two stochastic layers (Burda et al. 2016, section 5).

    inference   q(h1|x)  = N(mu1, diag(exp(logvar1))),    [mu1, logvar1] = q1(x)      x (B, P) -> (B, 2 D1)
                q(h2|h1) = N(mu2, diag(exp(logvar2))),    [mu2, logvar2] = q2(h1)     (K, B, D1) -> (K, B, 2 D2)
    generative  p(h2)    = N(0, I)
                p(h1|h2) = N(mu_p, diag(exp(logvar_p))),  [mu_p, logvar_p] = p1(h2)   (K, B, D2) -> (K, B, 2 D1)
                p(x|h1)  = likelihood(px(h1))                                         h1 -> (K, B, O)

with h1 = mu1 + exp(logvar1/2) eps1 and h2 = mu2 + exp(logvar2/2) eps2; one sample's noise is
eps = [eps1, eps2], (K, B, D1 + D2).  The model is its log-weight terms
(:class:`minivae.model.LatentVariableModel` reduces them over K with the objective's bound):

    log w = log p(x|h1) + beta [ log p(h1|h2) + log p(h2) - log q(h1|x) - log q(h2|h1) ].
            `- log_px -'        `------------------------ log_latent -------------------'

For ``"elbo"`` the h2 part is integrated in closed form given h1:
E_q(h2|h1)[log p(h2) - log q(h2|h1)] = -KL(q(h2|h1) || N(0, I)), (K, B).

Paper sizes: D1 = 100, D2 = 50, x <-> h1 networks 2 x 200 tanh, h1 <-> h2 networks 2 x 100 tanh.
"""
from __future__ import annotations

from . import gaussian as G
from .backend import Backend
from .checks import check_int, check_sizes
from .layers import MLP
from .model import LatentLayer, LatentVariableModel


class TwoLayerVAE(LatentVariableModel):
    r"""Two stochastic layers h1 (D1 units) and h2 (D2 units); see the module docstring.

    Parameters are named ``"q1.*"``, ``"q2.*"`` (inference), ``"p1.*"``, ``"px.*"`` (generative).
    """

    inference_networks = ("q1", "q2")

    def __init__(self, x_dim: int = 784, h1_dim: int = 100, h2_dim: int = 50,
                 x_hidden=(200, 200), h_hidden=(100, 100), activation: str = "tanh",
                 likelihood: str = "bernoulli", sigma: float = 1.0, dtype: str = "float32",
                 seed: int = 0, backend: str | Backend = "numpy"):
        x_dim = check_int("x_dim", x_dim, 1, "x_dim counts pixels per example, e.g. 784")
        h1_dim = check_int("h1_dim", h1_dim, 1, "h1_dim is the first latent layer's width")
        h2_dim = check_int("h2_dim", h2_dim, 1, "h2_dim is the second latent layer's width")
        x_hidden = check_sizes("x_hidden", x_hidden)
        h_hidden = check_sizes("h_hidden", h_hidden)
        rng = self._setup(backend, seed, dtype, likelihood, sigma, activation)
        self.config = dict(x_dim=x_dim, h1_dim=h1_dim, h2_dim=h2_dim, x_hidden=x_hidden,
                           h_hidden=h_hidden, activation=activation, likelihood=likelihood,
                           sigma=float(sigma), dtype=self.dtype.name, seed=int(seed))
        self.x_dim, self.h1_dim, self.h2_dim = x_dim, h1_dim, h2_dim
        self.latent_dim = self.h1_dim                   # what encode / decode speak
        self.eps_dim = self.h1_dim + self.h2_dim
        kw = dict(rng=rng, dtype=self.dtype, xp=self.xp)
        self.q1 = MLP([x_dim, *x_hidden, 2 * h1_dim], activation, **kw)
        self.q2 = MLP([h1_dim, *h_hidden, 2 * h2_dim], activation, **kw)
        self.p1 = MLP([h2_dim, *h_hidden[::-1], 2 * h1_dim], activation, **kw)
        self.px = MLP([h1_dim, *x_hidden[::-1], self.likelihood.n_outputs(x_dim)], activation, **kw)
        self.output_layer = f"px.{len(self.px.sizes) - 2}.b"
        self._finish_init({"q1": self.q1, "q2": self.q2, "p1": self.p1, "px": self.px})

    # ------------------------------------------------------------ inference and generation
    def encode(self, x):
        """(mu1, logvar1) of q(h1 | x), each (B, D1)."""
        return G.split(self.q1.forward(self.check_x(x))[0])

    def encode_h2(self, h1):
        """(mu2, logvar2) of q(h2 | h1), each h1.shape[:-1] + (D2,)."""
        return G.split(self.q2.forward(h1.astype(self.dtype, copy=False))[0])

    def prior_h1(self, h2):
        """(mu_p, logvar_p) of p(h1 | h2), each h2.shape[:-1] + (D1,)."""
        return G.split(self.p1.forward(h2.astype(self.dtype, copy=False))[0])

    def decode(self, h1):
        """E[x | h1], the mean of p(x | h1); h1 (..., D1) gives (..., P)."""
        return self.likelihood.mean(self.px.forward(self.check_z(h1, "h1"))[0])

    def reconstruct(self, x):
        return self.decode(self.encode(x)[0])

    def sample(self, n: int, rng=None):
        """h2 ~ N(0, I), h1 ~ p(h1 | h2), decoded to E[x | h1], (n, P)."""
        n = check_int("n", n, 1, "n counts the samples to draw")
        rng = self.backend.rng if rng is None else rng
        h2 = rng.standard_normal((n, self.h2_dim), dtype=self.dtype)
        mu_p, logvar_p = self.prior_h1(h2)
        eps1 = rng.standard_normal(mu_p.shape, dtype=self.dtype)
        h1, _ = G.reparameterize_forward(mu_p, logvar_p, eps1)
        return self.decode(h1)

    def latent_means(self, x, rng=None, n_samples: int = 100):
        r"""[E_q[h1], E_q[h2]] per example: mu1(x), and mean_s mu2(h1_s) over h1_s ~ q(h1|x)."""
        n_samples = check_int("n_samples", n_samples, 1, "n_samples counts h1 draws per example")
        rng = self.backend.generator("latent_means") if rng is None else rng
        mu1, logvar1 = self.encode(x)
        eps1 = rng.standard_normal((n_samples,) + mu1.shape, dtype=self.dtype)
        h1, _ = G.reparameterize_forward(mu1, logvar1, eps1)
        mu2, _ = self.encode_h2(h1)
        return [mu1, mu2.mean(axis=0)]

    # ------------------------------------------------------------ log w, and its backward
    def log_weight_terms(self, x, eps, analytic_kl: bool = False):
        r"""The two terms of log w for x (B, P) and the noise eps (K, B, D1 + D2).

            [mu1, logvar1] = q1(x)                       h1 = mu1 + sigma1 eps1        (K, B, D1)
            [mu2, logvar2] = q2(h1)                      h2 = mu2 + sigma2 eps2        (K, B, D2)
            [mu_p, logvar_p] = p1(h2)                    out = px(h1)                  (K, B, O)
            log_px     = log p(x | out)                                                (K, B)
            log_latent = log N(h1; mu_p, sigma_p^2) - log N(h1; mu1, sigma1^2)
                         + log N(h2; 0, I) - log N(h2; mu2, sigma2^2)                  (K, B)
                         (the h2 pair replaced by -KL(q(h2|h1) || N(0, I)) with ``analytic_kl``)

        Returns ``(log_px, log_latent, cache)``; the cache holds, besides what the backward needs,
        ``"h1"``, ``"mu1"``, ``"logvar1"``, ``"h2"``, ``"mu2"``, ``"logvar2"``, ``"mu_p"``,
        ``"logvar_p"`` for a reader of the latent layers.
        """
        D1 = self.h1_dim
        hq1, q1 = self.q1.forward(x)                                      # (B, 2 D1)
        mu1, logvar1 = G.split(hq1)
        h1, r1 = G.reparameterize_forward(mu1, logvar1, eps[..., :D1])    # (K, B, D1)
        hq2, q2 = self.q2.forward(h1)                                     # (K, B, 2 D2)
        mu2, logvar2 = G.split(hq2)
        h2, r2 = G.reparameterize_forward(mu2, logvar2, eps[..., D1:])    # (K, B, D2)
        hp1, p1 = self.p1.forward(h2)                                     # (K, B, 2 D1)
        mu_p, logvar_p = G.split(hp1)
        out, px = self.px.forward(h1)                                     # (K, B, O)

        log_px, lik = self.likelihood.forward(x, out)                     # (K, B)
        log_p1, lp1 = G.log_normal_forward(h1, mu_p, logvar_p)            # log p(h1|h2)
        log_q1, lq1 = G.log_normal_forward(h1, mu1, logvar1)              # log q(h1|x)
        cache = dict(q1=q1, r1=r1, q2=q2, r2=r2, p1=p1, px=px, lik=lik, lp1=lp1, lq1=lq1,
                     h1=h1, mu1=mu1, logvar1=logvar1, h2=h2, mu2=mu2, logvar2=logvar2,
                     mu_p=mu_p, logvar_p=logvar_p)
        # log p(h2) - log q(h2|h1), or -KL(q(h2|h1) || N(0, I)) in closed form     (K, B)
        ratio2, cache["latent2"] = G.std_normal_log_ratio_forward(h2, mu2, logvar2, analytic_kl)
        log_latent = log_p1 - log_q1                                      # (K, B)
        log_latent += ratio2
        return log_px, log_latent, cache

    def log_weight_backward(self, dlog_px, dlog_latent, cache, score: bool = True):
        r"""Gradients of sum dlog_px * log_px + sum dlog_latent * log_latent, the forward in reverse.

        ``score`` must be True: a path-only gradient (STL, DReG) of two stochastic layers would keep
        log q(h2|h1)'s dependence on h1 while dropping its parameters' own, which this model does not
        write (DReG as published is for one stochastic layer).

        1. p(x|h1):     dout -> px backward -> dh1
        2. p(h1|h2):    dh1, dmu_p, dlogvar_p from dlog_latent -> p1 backward -> dh2
        3. q(h1|x):     dh1 += from -dlog_latent at the sample; dmu1, dlogvar1 from the density
        4. h2 terms:    [closed form]  dmu2, dlogvar2 from -KL
                        [sampled]      dh2 += from log p(h2) and log q(h2|h1); dmu2, dlogvar2
                        (:func:`minivae.gaussian.std_normal_log_ratio_backward`, as the VAE's z)
        5. h2 = mu2 + sigma2 eps2:  dmu2 += dh2,  dlogvar2 += dh2 eps2 sigma2 / 2  -> q2 -> dh1
        6. h1 = mu1 + sigma1 eps1:  dmu1 += sum_K dh1, dlogvar1 += sum_K dh1 eps1 sigma1 / 2 -> q1
        """
        if not score:
            raise ValueError("The two-layer model does not support path-only estimators (STL, "
                             "DReG: published for one stochastic layer): use estimator iwae, "
                             "miwae, piwae or ciwae, or the one-layer VAE.")
        dh1, g_px = self.px.backward(self.likelihood.backward(dlog_px, cache["lik"]), cache["px"])
        dh1_p, dmu_p, dlogvar_p = G.log_normal_backward(dlog_latent, cache["lp1"])
        dh2, g_p1 = self.p1.backward(G.join(dmu_p, dlogvar_p), cache["p1"])
        dh1 += dh1_p
        dh1_q, dmu1, dlogvar1 = G.log_normal_backward(-dlog_latent, cache["lq1"])
        dh1 += dh1_q

        dh2_latent, dmu2, dlogvar2 = G.std_normal_log_ratio_backward(dlog_latent, cache["latent2"])
        if dh2_latent is not None:                                        # sampled: through h2 too
            dh2 += dh2_latent
        dmu2_r, dlogvar2_r = G.reparameterize_backward(dh2, cache["r2"])
        dh1_q2, g_q2 = self.q2.backward(G.join(dmu2 + dmu2_r, dlogvar2 + dlogvar2_r), cache["q2"])
        dh1 += dh1_q2
        dmu1_r, dlogvar1_r = G.reparameterize_backward(dh1, cache["r1"])
        _, g_q1 = self.q1.backward(G.join(dmu1 + dmu1_r, dlogvar1 + dlogvar1_r), cache["q1"],
                                   need_dx=False)
        return {**self._named("q1", g_q1), **self._named("q2", g_q2),
                **self._named("p1", g_p1), **self._named("px", g_px)}

    def latent_layers(self, cache):
        """[h1, h2] from a ``log_weight_terms`` cache: q(h1|x) with its prior p(h1|h2), q(h2|h1)."""
        return [LatentLayer("h1", cache["mu1"], cache["logvar1"], cache["h1"],
                            (cache["mu_p"], cache["logvar_p"])),
                LatentLayer("h2", cache["mu2"], cache["logvar2"], cache["h2"])]

    def score_backward(self, dlog_q, cache):
        r"""Gradients of q1 and q2 of sum dlog_q * log q(h1, h2 | x) with h1 and h2 held fixed.

        log q(h1, h2 | x) = log q(h1|x) + log q(h2|h1): each density's derivative in its own mean
        and log-variance at the fixed sample; the dh1 that q2's backward returns is dropped (h1 is
        held fixed), as is every dh.  Needs the cache of ``log_weight_terms(..., analytic_kl=False)``.
        """
        _, dmu1, dlogvar1 = G.log_normal_backward(dlog_q, cache["lq1"])
        _, lq2 = cache["latent2"]                                         # log q(h2|h1)'s cache
        _, dmu2, dlogvar2 = G.log_normal_backward(dlog_q, lq2)
        _, g_q2 = self.q2.backward(G.join(dmu2, dlogvar2), cache["q2"], need_dx=False)
        _, g_q1 = self.q1.backward(G.join(dmu1, dlogvar1), cache["q1"], need_dx=False)
        return {**self._named("q1", g_q1), **self._named("q2", g_q2)}
