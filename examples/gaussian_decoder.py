r"""Gaussian decoders on grey levels: a learned variance per pixel, and a weighted squared error.

    python examples/gaussian_decoder.py                          # MNIST grey levels, a few minutes
    python examples/gaussian_decoder.py --dataset fashion-mnist --r-loss-factor 2000
    python examples/gaussian_decoder.py --no-dequantize --out runs/gauss-collapse  # see below

Two VAEs with the same encoder and the same decoder body, trained on grey levels (not binarised):

(a) learned variance:  p(x|z) = N(x; m(z), diag(exp(v(z)))), the decoder outputs a mean m and a
    log-variance v for every pixel (``likelihood="gaussian_learned"``);
(b) fixed variance:    p(x|z) = N(x; m(z), sigma^2 I), which is the squared-error loss of the Keras
    book (Foster, "Generative Deep Learning"),  loss = r * (1/P) sum_p (x_p - m_p)^2 + KL,  with
    r = ``--r-loss-factor``.  Since -log N(x; m, sigma^2 I) is 1/(2 sigma^2) sum_p (x_p - m_p)^2 +
    (P/2) log(2 pi sigma^2), the two losses differ by a constant, and have the same gradients, when
    1/(2 sigma^2) = r / P (:func:`minivae.analysis.sigma_for_r_loss_factor`):

        sigma^2 = P / (2 r)          (P = 784, r = 1000:  sigma = 0.626)

    So r is a decoder variance chosen by hand.  A large r says "pixels are precise": the
    reconstruction term outweighs the KL, codes carry more nats, reconstructions sharpen and the
    samples from the prior get worse; a small r blurs everything.  The learned variance (a) sets
    that trade-off per pixel from the data.

The learned variance has a trap.  MNIST's border pixels are exactly 0 in every image, so the
likelihood of (a) is unbounded: v -> -infinity there, log p(x|z) -> +infinity, the loss runs off
to -infinity and nothing else is learned.  The fix is in the data: uniform dequantisation,
x~ = (k + u) / 256 with u ~ U[0, 1) for grey level k (:func:`minivae.analysis.dequantize`; Theis
et al. 2016), bounds the density (on the border v settles near the noise's log-variance,
log((1/256)^2 / 12) = -13.6) and makes -ELBO on x~ an upper bound on the discrete data's code
length, printed in bits per pixel (:func:`minivae.analysis.bits_per_pixel`; the uniform density on
[0, 1]^P scores 8).  The noise is drawn once (fixed seeds for the training and the test set: a
fresh draw per epoch would need a hook in the trainer).  ``--no-dequantize``
trains on the raw grey levels: within 10 epochs the runaway is slow (Adam moves v by about the
learning rate per step), but -ELBO has no lower bound and keeps falling the longer it trains.

What to expect with the defaults: (a) scores far better as a density (about 4 bits per pixel
against (b)'s 8.7: sigma = 0.63 is a poor noise model for pixels in [0, 1]), yet its means are
blurrier (higher MSE).  It wins its nats on the background, where sigma ~ 0.005, and explains
the strokes as noise (sigma of 0.1 and more on them, see learned_std.png) rather than encode them.
One draw x ~ p(x|z) from either decoder is speckled: that is why decoders are shown by their means.

Printed per decoder, on the test set: the decoder's sigma, the reconstruction's mean squared
error per pixel, -log p(x|z), KL, -ELBO in nats and bits per pixel, active units; for (b) also
the Keras loss r * MSE + KL, which equals -ELBO - (P/2) log(2 pi sigma^2).

Writes to --out (default runs/gaussian_decoder): metrics.json, reconstructions.png (inputs, then
the mean of each decoder), samples.png (the means E[x|z] and one draw x ~ p(x|z) for z ~ N(0, I)),
learned_std.png (the learned per-pixel standard deviation exp(v/2) for a few test inputs).
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np

from minivae import to_host
from minivae.analysis import bits_per_pixel, dequantize, sigma_for_r_loss_factor
from minivae.commands import (add_dataset_argument, add_short_training_arguments, backend_and_data,
                              build_vae, check_batch_size, output_folder, parse_flags,
                              positive_float, run, run_parser, short_training_config,
                              training_subset, write_figures, write_metrics)
from minivae.evaluate import active_units
from minivae.gaussian import LOG_2PI
from minivae.train import config_dict, train


def parse_args(argv=None):
    p = run_parser(__doc__, out="runs/gaussian_decoder")
    add_dataset_argument(p)
    p.add_argument("--r-loss-factor", type=positive_float, default=1000.0,
                   help="weight r of the mean squared error: the fixed decoder has "
                        "sigma^2 = P / (2 r)")
    p.add_argument("--no-dequantize", action="store_true",
                   help="train on the raw grey levels (the learned variance runs away)")
    add_short_training_arguments(p, latent_dim=16)
    return parse_flags(p, argv)


# ---------------------------------------------------------------- the two decoders

def decoder_outputs(model, z):
    """The learned decoder's mean m and log-variance v, each (B, P): out = [m, v]."""
    out, _ = model.decoder.forward(z.astype(model.dtype, copy=False))        # (B, 2P)
    return model.likelihood.split(out)


def summarize(name, model, sigma, history, x_test, dequantized, r=None) -> dict:
    """Test numbers of one decoder (the last epoch's ELBO terms, and more on x_test's first 2000)."""
    last, P = history[-1], model.x_dim
    x = model.backend.asarray(x_test[:2000], model.dtype)
    mu, _ = model.encode(x)
    mse = float(to_host(((model.decode(mu) - x) ** 2).mean()))
    row = {"decoder": name, "likelihood": model.likelihood.name, "sigma": sigma,
           "mse": mse, "test_recon": last["test_recon"], "test_kl": last["test_kl"],
           "test_nelbo": last["test_nelbo"], "active_units": active_units(model, x_test)[0],
           "bits_per_pixel": bits_per_pixel(last["test_nelbo"], P) if dequantized else None,
           "history": history}
    if model.likelihood.name == "gaussian_learned":
        _, v = decoder_outputs(model, mu)                                      # (2000, P)
        v = to_host(v).astype(np.float64)
        row.update(sigma=float(np.exp(0.5 * np.median(v))),                   # the median pixel's
                   logvar_min=float(v.min()), logvar_max=float(v.max()))
    else:
        row["keras_loss"] = last["test_nelbo"] - 0.5 * P * (LOG_2PI + 2 * math.log(sigma))
        row["r_loss_factor"] = r
    return row


# ---------------------------------------------------------------- figures

def make_figures(learned, fixed, x_test, out: Path, seed: int, n: int = 10) -> list[Path]:
    from minivae import plots
    be, sigma = learned.backend, fixed.likelihood.sigma
    x = be.asarray(x_test[:n], learned.dtype)
    z = be.generator("figures", seed).standard_normal((n, learned.latent_dim), dtype=learned.dtype)
    eps = be.generator("figure_noise", seed).standard_normal((n, learned.x_dim), dtype=learned.dtype)
    m, v = decoder_outputs(learned, z)
    m_fixed = fixed.decode(z)
    draw, draw_fixed = m + be.xp.exp(0.5 * v) * eps, m_fixed + sigma * eps     # x ~ p(x | z)
    m_x, v_x = decoder_outputs(learned, learned.encode(x[:8])[0])

    def grey_rows(name, images, labels, title):     # means and draws can leave [0, 1]: clip
        tiles = np.stack([np.clip(to_host(r), 0, 1) for r in images])
        return plots.labelled_grid(tiles, out / name, labels, title, left=150)

    return [grey_rows("reconstructions.png", [x, learned.reconstruct(x), fixed.reconstruct(x)],
                      ["input", "(a) learned var", f"(b) sigma={sigma:.2f}"],
                      "test inputs and the decoders' means E[x | z = mu(x)]"),
            grey_rows("samples.png", [m, draw, m_fixed, draw_fixed],
                      ["(a) mean", "(a) one draw", "(b) mean", "(b) one draw"],
                      "z ~ N(0, I): E[x | z], and x ~ p(x | z) (clipped to 0..1)"),
            plots.plot_learned_std(x[:8], m_x, v_x, out / "learned_std.png")]


# ---------------------------------------------------------------- main

def main(argv=None) -> int:
    args = parse_args(argv)
    out, deq = output_folder(args.out), not args.no_dequantize
    be, ds = backend_and_data(args)
    x_train, x_test = training_subset(ds, args.subset).x_train, ds.x_test
    check_batch_size(args.batch_size, x_train.shape[0])
    if deq:                                                     # noise drawn once, fixed seeds
        x_train = dequantize(x_train, np.random.default_rng([args.seed, 10]))
        x_test = dequantize(x_test, np.random.default_rng([args.seed, 11]))
    P, r = x_train.shape[1], args.r_loss_factor
    sigma = sigma_for_r_loss_factor(r, P)
    print(f"{ds.name}: {x_train.shape[0]} training and {x_test.shape[0]} test images, grey levels"
          f"{' dequantised: (k + u) / 256' if deq else ''}; backend {be.name}")
    print(f"r_loss_factor r = {r:g} on P = {P} pixels:  r/P sum (x - m)^2 = sum (x - m)^2 / "
          f"(2 sigma^2)  =>  sigma^2 = P / (2 r) = {sigma ** 2:.4f},  sigma = {sigma:.4f}")

    t0 = time.perf_counter()
    cfg, trained = short_training_config(args, binarize=False), []
    for name, likelihood, s in (("(a) learned", "gaussian_learned", 1.0),
                                ("(b) fixed", "gaussian", sigma)):
        model = build_vae(args, x_train, be, likelihood, s)     # m starts at the mean image, v at 0
        trained.append((model, train(model, x_train, x_test, cfg,
                                     log=lambda line: print(f"  [{name}] {line}"))))
    seconds = time.perf_counter() - t0
    (learned, hist_a), (fixed, hist_b) = trained
    rows = [summarize("(a) learned variance", learned, None, hist_a, x_test, deq),
            summarize("(b) fixed sigma", fixed, sigma, hist_b, x_test, deq, r)]

    enc = " -> ".join(str(s) for s in learned.encoder.sizes)
    print(f"\nmodel: encoder {enc} ({args.activation}); {args.epochs} epochs each; "
          f"test set, nats per image")
    print(f"{'decoder':<22} {'sigma':>6} {'MSE':>7} {'recon':>9} {'KL':>6} {'-ELBO':>9} "
          f"{'bits/px':>7} {'active':>6}")
    for row in rows:
        bpp = f"{row['bits_per_pixel']:7.3f}" if deq else "    n/a"
        print(f"{row['decoder']:<22} {row['sigma']:6.3f} {row['mse']:7.4f} {row['test_recon']:9.1f} "
              f"{row['test_kl']:6.1f} {row['test_nelbo']:9.1f} {bpp} "
              f"{row['active_units']:3d}/{learned.latent_dim}")
    a, b = rows
    print(f"(a): sigma is the median pixel's exp(v/2); log-variance v ranges over "
          f"[{a['logvar_min']:.1f}, {a['logvar_max']:.1f}]"
          + ("" if deq else " (no dequantisation: the border pixels' v keeps falling)"))
    print(f"(b): Keras loss r * MSE + KL = {b['keras_loss']:.1f} = -ELBO - (P/2) log(2 pi sigma^2)")

    write_metrics(out / "metrics.json", {
        "dataset": ds.name, "backend": be.name, "dequantized": deq,
        "train_images": int(x_train.shape[0]), "r_loss_factor": r, "sigma": sigma,
        "seconds": seconds, "train": config_dict(cfg),
        "models": {"learned": learned.config, "fixed": fixed.config}, "decoders": rows})
    write_figures(make_figures, learned, fixed, x_test, out, args.seed)
    print(f"training {seconds:.0f} s; wrote {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
