r"""beta-VAE: the same model trained with the KL term weighted by beta < 1, = 1 and > 1.

    python examples/beta_vae.py                             # betas 0.5 1 4, a few minutes on 2 cores
    python examples/beta_vae.py --betas 0.25 1 2 8 --epochs 20 --out runs/beta-vae-long
    python examples/beta_vae.py --backend cupy              # the same on an NVIDIA GPU

Each model maximises  E_q[log p(x|z)] - beta KL(q(z|x) || N(0, I))  (Higgins et al. 2017).
beta = 1 is the ELBO, a bound on log p(x).  beta > 1 charges more for every nat of information
the latent code carries about x: units that are not worth their price are switched off
(q(z_d|x) = N(0, 1) for every x, KL_d = 0, the unit is inactive), the reconstructions blur, and
samples from the prior look more like the reconstructions.  beta < 1 makes information cheap:
more units carry more nats, reconstructions sharpen, and the aggregate posterior drifts away from
N(0, I), so samples from the prior get worse.  All models share the architecture, the
initialisation and every random draw (seed): only beta differs.

Printed per beta, on the test set (binarised once):  -ELBO = recon + KL (the beta = 1 bound,
comparable across betas), recon = -E_q log p(x|z), KL, the training loss recon + beta KL, and the
active units (Burda et al. 2016: Cov_x E_q[z_d] > 0.01).

Writes to --out (default runs/beta_vae): metrics.json, kl_per_dimension.png (KL of each latent
unit, sorted, one panel per beta), reconstructions_samples.png (rows = betas: test
reconstructions, then samples from the prior) and traversals.png (the three units with the most
KL per beta, swept from -3 to 3 around one test digit's code).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from minivae import to_host
from minivae.analysis import kl_per_dimension
from minivae.commands import (add_dataset_argument, add_training_arguments, parse_flags,
                              positive_float, run, run_parser)
from minivae.data import binarize_fixed
from minivae.evaluate import active_units
from minivae.runs import (backend_and_data, build_vae, check_batch_size, output_folder,
                          short_training_config, write_figures, write_metrics)
from minivae.train import NonFiniteLoss, config_dict, train


def parse_args(argv=None):
    p = run_parser(__doc__, out="runs/beta_vae")
    add_dataset_argument(p)
    p.add_argument("--betas", type=positive_float, nargs="+", default=[0.5, 1.0, 4.0],
                   help="KL weights (> 0), one model each")
    add_training_arguments(p, latent_dim=32)
    return parse_flags(p, argv)


# ---------------------------------------------------------------- the numbers of one beta

def summarize(model, beta, history, x_test_bin) -> dict:
    """The numbers of one beta: the test terms of the last epoch, KL per unit, active units."""
    last = history[-1]
    recon, kl = last["test_recon"], last["test_kl"]
    n_active, var_mu = active_units(model, x_test_bin)
    return {"beta": beta, "test_nelbo": recon + kl, "test_recon": recon, "test_kl": kl,
            "test_loss": recon + beta * kl, "active_units": n_active,
            "kl_per_dim": kl_per_dimension(model, x_test_bin).tolist(),
            "var_mu": var_mu.tolist(), "history": history}


# ---------------------------------------------------------------- figures

def make_figures(models, rows, x_test_bin, out: Path, seed: int, n: int = 8) -> list[Path]:
    from minivae import plots
    be = models[0].backend
    x = be.asarray(x_test_bin[:n], models[0].dtype)
    blank = np.full((1, x.shape[1]), plots.SEPARATOR, dtype=np.float32)        # a spacer tile
    # rows = betas: n reconstructions | spacer | n samples; the first row shows the inputs
    grid_rows = [np.concatenate([to_host(x), blank, np.repeat(blank, n, 0)])]
    for model in models:
        z = be.generator("figures", seed).standard_normal((n, model.latent_dim), dtype=model.dtype)
        grid_rows.append(np.concatenate([to_host(model.reconstruct(x)), blank,
                                         to_host(model.decode(z))]))
    written = [plots.plot_kl_per_unit([r["kl_per_dim"] for r in rows], [r["var_mu"] for r in rows],
                                      [f"beta = {r['beta']:g}: KL {r['test_kl']:.1f} nats,\n"
                                       f"{r['active_units']}/{len(r['kl_per_dim'])} active"
                                       for r in rows], out / "kl_per_dimension.png"),
               plots.labelled_grid(np.stack(grid_rows), out / "reconstructions_samples.png",
                                   ["input"] + [f"beta = {r['beta']:g}" for r in rows],
                                   "test reconstructions  |  samples from the prior "
                                   "(the same z in every row)")]

    # traversals: one digit's code, the 3 units with the most KL each swept over -3..3
    values = np.linspace(-3, 3, 9)
    tiles, labels = [], []
    for model, r in zip(models, rows):
        mu, _ = model.encode(x[:1])                                             # (1, D)
        for d in np.argsort(r["kl_per_dim"])[::-1][:3]:
            z = model.xp.repeat(mu, len(values), axis=0)                        # (9, D)
            z[:, d] = model.xp.asarray(values, dtype=model.dtype)
            tiles.append(to_host(model.decode(z)))
            labels.append(f"b={r['beta']:g} z{d} {r['kl_per_dim'][d]:.1f}")
    written.append(plots.labelled_grid(np.stack(tiles), out / "traversals.png", labels,
                                       "one unit swept, the others at a test digit's code "
                                       "(row: beta, unit, its KL in nats)",
                                       col_labels=[f"{v:g}" for v in values]))
    return written


# ---------------------------------------------------------------- main

def main(argv=None) -> int:
    args = parse_args(argv)
    out = output_folder(args.out)
    be, ds = backend_and_data(args, subset=args.subset)
    x_train = ds.x_train
    check_batch_size(args.batch_size, x_train.shape[0])
    x_test_bin = binarize_fixed(ds.x_test, args.seed)             # what train() evaluates on
    print(f"{ds.name}: {x_train.shape[0]} training and {ds.x_test.shape[0]} test images, "
          f"binarised; backend {be.name}; betas {' '.join(f'{b:g}' for b in args.betas)}")

    t0 = time.perf_counter()
    models, rows = [], []
    for beta in args.betas:          # a fresh VAE each, the same seed: only beta differs
        model, cfg = build_vae(args, x_train, be), short_training_config(args, beta=beta)
        try:
            history = train(model, x_train, ds.x_test, cfg,
                            log=lambda line: print(f"  [beta {beta:g}] {line}"))
        except NonFiniteLoss as err:
            print(f"error: beta {beta:g}: {err}", file=sys.stderr)
            return 3
        models.append(model)
        rows.append(summarize(model, beta, history, x_test_bin))
    seconds = time.perf_counter() - t0

    enc = " -> ".join(str(s) for s in models[0].encoder.sizes)
    print(f"\nmodel: encoder {enc} ({args.activation}), Bernoulli decoder; "
          f"{args.epochs} epochs per beta; test set, nats per image")
    print(f"{'beta':>6} {'-ELBO':>8} {'recon':>8} {'KL':>7} {'recon+bKL':>10} {'active':>7}")
    for r in rows:
        print(f"{r['beta']:6g} {r['test_nelbo']:8.2f} {r['test_recon']:8.2f} {r['test_kl']:7.2f} "
              f"{r['test_loss']:10.2f} {r['active_units']:4d}/{models[0].latent_dim}")

    write_metrics(out / "metrics.json", {
        "dataset": ds.name, "backend": be.name, "train_images": int(x_train.shape[0]),
        "seconds": seconds, "model": models[0].config,
        "train": {**config_dict(cfg), "beta": args.betas}, "betas": rows})
    write_figures(make_figures, models, rows, x_test_bin, out, args.seed)
    print(f"training {seconds:.0f} s; wrote {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
