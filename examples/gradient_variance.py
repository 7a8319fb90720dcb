r"""Why reparameterise: the variance of two estimators of the ELBO's encoder gradient on MNIST.

    python examples/gradient_variance.py                  # NumPy on the CPU, minutes on 2 cores
    python examples/gradient_variance.py --backend cupy   # the same on an NVIDIA GPU
    python examples/gradient_variance.py --samples 1 10 100 --repeats 200 --out runs/gv

A VAE is pretrained briefly (so it is not at its random initialisation), then, on one fixed
binarised batch, each estimator of d loss / d encoder parameters (minivae/estimators.py) is
drawn ``--repeats`` times with K samples per estimate, for every K in ``--samples``:

    reparameterization   (1/K) sum_i grad_phi f(mu + sigma eps_i)                 (Kingma & Welling)
    score function       (1/K) sum_i f(z_i) grad_phi log q(z_i|x)                 (REINFORCE)
    score fn + baseline  (1/K) sum_i (f(z_i) - mean_{j != i} f(z_j)) grad_phi log q(z_i|x)

with f = log p(x|z) + log p(z) - log q(z|x); all three see the same eps in each repeat.  The
table gives each estimator's total variance (the sum over the encoder's entries of their
variance across repeats) and its mean signal-to-noise ratio |mean| / std; every estimate is
an average of K independent terms, so its variance falls like 1/K (about 1/(K-1) with the
leave-one-out baseline, which spends one sample's worth of information on the baseline).
An entry whose mean is zero still reads SNR ~ sqrt(2 / (pi R)) with R repeats (0.11 for 50):
|mean| of R noisy estimates is itself noise.

Writes to --out: gradient_variance.json (every number) and gradient_variance.png.
"""
from __future__ import annotations

import math
import sys
import time

from minivae.commands import at_least, non_negative_int, parse_flags, positive_int, run, run_parser
from minivae.data import binarize_fixed
from minivae.estimators import ESTIMATORS, estimator_moments, summarize_moments
from minivae.plots import plot_gradient_variance
from minivae.runs import (backend_and_data, build_vae, check_batch_size, machine, output_folder,
                          training_subset, write_figures, write_metrics)
from minivae.train import TrainConfig, config_dict, train


def parse_args(argv=None):
    p = run_parser(__doc__, out="runs/gradient_variance")
    p.add_argument("--samples", type=positive_int, nargs="+", default=[1, 2, 5, 10, 50, 100],
                   help="K: samples per gradient estimate")
    p.add_argument("--repeats", type=at_least(2), default=50,
                   help="independent estimates per estimator and K (at least 2: a variance)")
    p.add_argument("--batch-size", type=positive_int, default=100, help="the fixed batch's size")
    p.add_argument("--pretrain-epochs", type=non_negative_int, default=2,
                   help="epochs of ELBO training on --subset before measuring (0: random init)")
    p.add_argument("--subset", type=positive_int, default=10000,
                   help="training images for the pretraining")
    p.add_argument("--latent-dim", type=positive_int, default=50)
    p.add_argument("--hidden", type=positive_int, nargs="+", default=[200, 200],
                   help="hidden layer sizes of the encoder (the decoder mirrors them)")
    p.add_argument("--no-figures", action="store_true")
    return parse_flags(p, argv)


def pretrain(args, be, x_train, x_test):
    model = build_vae(args, x_train, be)
    history, cfg = [], None
    if args.pretrain_epochs > 0:
        cfg = TrainConfig(epochs=args.pretrain_epochs, batch_size=min(100, x_train.shape[0]),
                          seed=args.seed)
        history = train(model, x_train, x_test, cfg, progress=False)
    return model, history, cfg


def _ratio(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def format_table(rows) -> str:
    """One line per K: total variance of each estimator, the ratios to reparam, the SNRs."""
    head = (f"{'K':>5} | {'total variance':^37} | {'ratio to reparam':^20} | "
            f"{'SNR |mean| / std':^28}".rstrip() + "\n"
            f"{'':>5} | {'reparam':>11} {'score fn':>11} {'score fn+b':>11} | "
            f"{'score fn':>9} {'score fn+b':>10} | {'reparam':>8} {'sf':>8} {'sf+b':>8}")
    lines = [head, "-" * len(head.splitlines()[1])]

    def get(row, name, key, fmt):
        return format(row[name][key], fmt) if name in row else "n/a"

    for r in rows:
        rp = r["reparameterization"]["total_variance"]
        ratio = {n: (_ratio(r[n]["total_variance"] / rp) if n in r else "n/a")
                 for n in ESTIMATORS[1:]}
        lines.append(
            f"{r['k']:>5} | {get(r, 'reparameterization', 'total_variance', '.3e'):>11} "
            f"{get(r, 'score_function', 'total_variance', '.3e'):>11} "
            f"{get(r, 'score_function_baseline', 'total_variance', '.3e'):>11} | "
            f"{ratio['score_function']:>9} {ratio['score_function_baseline']:>10} | "
            f"{get(r, 'reparameterization', 'snr', '.3f'):>8} "
            f"{get(r, 'score_function', 'snr', '.3f'):>8} "
            f"{get(r, 'score_function_baseline', 'snr', '.3f'):>8}")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = output_folder(args.out)
    t_start = time.perf_counter()
    be, ds = backend_and_data(args, "mnist")
    x_train = training_subset(ds, args.subset).x_train
    check_batch_size(args.batch_size, ds.x_train.shape[0])       # the fixed batch: any images
    print(f"{ds.name}: {x_train.shape[0]} training images from {ds.source}; backend {be.name}")

    t0 = time.perf_counter()
    model, history, cfg = pretrain(args, be, x_train, ds.x_test[:1000])
    pretrain_seconds = time.perf_counter() - t0
    enc = " -> ".join(str(s) for s in model.encoder.sizes)
    n_enc = sum(p.size for n, p in model.params.items() if n.startswith("encoder."))
    print(f"encoder {enc}: {n_enc:,} parameters; pretrained {args.pretrain_epochs} epochs "
          f"in {pretrain_seconds:.1f} s")

    x = be.asarray(binarize_fixed(ds.x_train[: args.batch_size], args.seed), model.dtype)
    print(f"gradient of the loss -ELBO w.r.t. the encoder on one batch of {x.shape[0]}, "
          f"{args.repeats} repeats per K\n")
    rows = []
    for k in args.samples:
        t1 = time.perf_counter()
        moments = estimator_moments(model, x, k, args.repeats, be.generator("gradient_variance", k))
        row = {"k": k, **{name: summarize_moments(m) for name, m in moments.items()}}
        row["seconds"] = time.perf_counter() - t1
        rows.append(row)
    print(format_table(rows))
    snr_floor = math.sqrt(2 / (math.pi * args.repeats))
    print(f"(an entry with zero mean reads SNR ~ {snr_floor:.3f} with {args.repeats} repeats)")
    measure_seconds = sum(r["seconds"] for r in rows)

    write_metrics(out / "gradient_variance.json", {
        "backend": be.name, "batch_size": x.shape[0], "repeats": args.repeats,
        "samples": args.samples, "encoder_parameters": int(n_enc), "rows": rows,
        "snr_floor": snr_floor,
        "pretrain": {"epochs": args.pretrain_epochs, "subset": x_train.shape[0],
                     "seconds": pretrain_seconds, "history": history,
                     "train": config_dict(cfg) if cfg else None},
        "model": model.config, "measure_seconds": measure_seconds,
        "total_seconds": time.perf_counter() - t_start,
        "machine": machine(),
    })
    if not args.no_figures:
        print()
        write_figures(lambda: [plot_gradient_variance(rows, out / "gradient_variance.png",
                                                      args.repeats)])
    print(f"measured in {measure_seconds:.1f} s, {time.perf_counter() - t_start:.1f} s in all; "
          f"wrote {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
