r"""Gaussian decoders on grey levels: a learned variance per pixel, and a weighted squared error.

    python examples/gaussian_decoder.py                          # MNIST grey levels, a few minutes
    python examples/gaussian_decoder.py --dataset fashion-mnist --r-loss-factor 2000
    python examples/gaussian_decoder.py --no-dequantize --out runs/gauss-collapse  # see below

Two VAEs with the same encoder and decoder body, trained on grey levels (not binarised):
(a) a learned variance, p(x|z) = N(x; m(z), diag(exp(v(z)))) (``likelihood="gaussian_learned"``);
(b) a fixed one, p(x|z) = N(x; m(z), sigma^2 I), whose -ELBO is, up to a constant, the Keras
    book's loss (Foster, "Generative Deep Learning") r * (1/P) sum_p (x_p - m_p)^2 + KL with
    r = ``--r-loss-factor`` = P / (2 sigma^2) (:func:`minivae.analysis.sigma_for_r_loss_factor`;
    r = 1000 on 784 pixels: sigma = 0.626).  r is a decoder variance chosen by hand: a large r
    sharpens reconstructions and spoils samples from the prior; (a) sets it per pixel from the data.

MNIST's border pixels are 0 in every image, so (a)'s likelihood is unbounded there (v -> -inf;
docs/derivation.md, section 4).  Uniform dequantisation x~ = (k + u) / 256, drawn once with fixed
seeds (:func:`minivae.analysis.dequantize`), bounds it and makes -ELBO a code length, printed in
bits per pixel (:func:`minivae.analysis.bits_per_pixel`); ``--no-dequantize`` trains on the raw
grey levels, where -ELBO keeps falling.  With the defaults (a) scores far better as a density
(about 4 bits per pixel against 8.7) yet its means are blurrier: it wins its nats on the
background (sigma ~ 0.005) and calls the strokes noise.

Prints per decoder, on the test set: sigma, the mean squared error per pixel, -log p(x|z), KL,
-ELBO (nats, bits per pixel), active units, and (b)'s Keras loss r * MSE + KL = -ELBO - (P/2)
log(2 pi sigma^2).  Writes to --out: metrics.json, reconstructions.png, samples.png (E[x|z], and
a speckled draw x ~ p(x|z): decoders are shown by their means), learned_std.png ((a)'s exp(v/2)).
"""
from __future__ import annotations

import sys
import time

import numpy as np

from minivae import to_host
from minivae.analysis import bits_per_pixel, dequantize, sigma_for_r_loss_factor
from minivae.commands import (add_dataset_argument, add_training_arguments, parse_flags,
                              positive_float, run, run_parser)
from minivae.evaluate import active_units
from minivae.gaussian import LOG_2PI
from minivae.runs import (backend_and_data, build_vae, check_batch_size, output_folder,
                          short_training_config, write_figures, write_metrics)
from minivae.train import config_dict, train


def parse_args(argv=None):
    p = run_parser(__doc__, out="runs/gaussian_decoder")
    add_dataset_argument(p)
    p.add_argument("--r-loss-factor", type=positive_float, default=1000.0,
                   help="weight r of the mean squared error: the fixed decoder's sigma^2 = P / (2 r)")
    p.add_argument("--no-dequantize", action="store_true", help="raw grey levels: (a) runs away")
    add_training_arguments(p, latent_dim=16)
    return parse_flags(p, argv)


def decoder_outputs(model, z):
    """The learned decoder's mean m and log-variance v, each (B, P): out = [m, v]."""
    out, _ = model.decoder.forward(z.astype(model.dtype, copy=False))        # (B, 2P)
    return model.likelihood.split(out)


def summarize(name, model, sigma, history, x_test, dequantized, r=None) -> dict:
    """Test numbers of one decoder (the last epoch's ELBO terms, and more on x_test's first 2000)."""
    last, P = history[-1], model.x_dim
    x = model.backend.asarray(x_test[:2000], model.dtype)
    mu, _ = model.encode(x)
    row = {"decoder": name, "likelihood": model.likelihood.name, "sigma": sigma,
           "mse": float(to_host(((model.decode(mu) - x) ** 2).mean())),
           "test_recon": last["test_recon"], "test_kl": last["test_kl"],
           "test_nelbo": last["test_nelbo"], "active_units": active_units(model, x_test)[0],
           "bits_per_pixel": bits_per_pixel(last["test_nelbo"], P) if dequantized else None,
           "history": history}
    if model.likelihood.name == "gaussian_learned":
        v = to_host(decoder_outputs(model, mu)[1]).astype(np.float64)         # (2000, P)
        row.update(sigma=float(np.exp(0.5 * np.median(v))),                   # the median pixel's
                   logvar_min=float(v.min()), logvar_max=float(v.max()))
    else:
        row.update(keras_loss=last["test_nelbo"] - 0.5 * P * (LOG_2PI + 2 * np.log(sigma)),
                   r_loss_factor=r)
    return row


def make_figures(learned, fixed, x_test, out, seed: int, n: int = 10) -> list:
    from minivae import plots
    be, dtype, sigma = learned.backend, learned.dtype, fixed.likelihood.sigma
    x = be.asarray(x_test[:n], dtype)
    z = be.generator("figures", seed).standard_normal((n, learned.latent_dim), dtype=dtype)
    eps = be.generator("figure_noise", seed).standard_normal((n, learned.x_dim), dtype=dtype)
    (m, v), m_fixed = decoder_outputs(learned, z), fixed.decode(z)
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


def main(argv=None) -> int:
    args = parse_args(argv)
    out, deq = output_folder(args.out), not args.no_dequantize
    be, ds = backend_and_data(args, subset=args.subset)
    x_train, x_test = ds.x_train, ds.x_test
    check_batch_size(args.batch_size, x_train.shape[0])
    if deq:                                                     # noise drawn once, fixed seeds
        x_train = dequantize(x_train, np.random.default_rng([args.seed, 10]))
        x_test = dequantize(x_test, np.random.default_rng([args.seed, 11]))
    P, r = x_train.shape[1], args.r_loss_factor
    sigma = sigma_for_r_loss_factor(r, P)                       # (b)'s decoder std
    print(f"{ds.name}: {x_train.shape[0]} training and {x_test.shape[0]} test images, grey levels"
          f"{' dequantised: (k + u) / 256' if deq else ''}; backend {be.name}")
    print(f"r_loss_factor r = {r:g} on P = {P} pixels:  r/P sum (x - m)^2 = sum (x - m)^2 / "
          f"(2 sigma^2)  =>  sigma^2 = P / (2 r) = {sigma ** 2:.4f},  sigma = {sigma:.4f}")

    t0, cfg = time.perf_counter(), short_training_config(args, binarize=False)
    learned = build_vae(args, x_train, be, "gaussian_learned")  # m starts at the mean image, v at 0
    fixed = build_vae(args, x_train, be, "gaussian", sigma)
    histories = [train(model, x_train, x_test, cfg, log=lambda line: print(f"  [{name}] {line}"))
                 for name, model in (("(a) learned", learned), ("(b) fixed", fixed))]
    seconds = time.perf_counter() - t0
    a, b = rows = [summarize("(a) learned variance", learned, None, histories[0], x_test, deq),
                   summarize("(b) fixed sigma", fixed, sigma, histories[1], x_test, deq, r)]

    print(f"\nmodel: encoder {' -> '.join(map(str, learned.encoder.sizes))} ({args.activation}); "
          f"{args.epochs} epochs each; test set, nats per image\n"
          "decoder                 sigma     MSE     recon     KL     -ELBO bits/px active")
    for row in rows:
        bpp = f"{row['bits_per_pixel']:7.3f}" if deq else "    n/a"
        print(f"{row['decoder']:<22} {row['sigma']:6.3f} {row['mse']:7.4f} {row['test_recon']:9.1f} "
              f"{row['test_kl']:6.1f} {row['test_nelbo']:9.1f} {bpp} "
              f"{row['active_units']:3d}/{learned.latent_dim}")
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
