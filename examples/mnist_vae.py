r"""Train a VAE (or an IWAE) on real MNIST and write its checkpoint, numbers and figures.

    python examples/mnist_vae.py                       # NumPy on the CPU, a few minutes on 2 cores
    python examples/mnist_vae.py --backend cupy        # the same on an NVIDIA GPU
    python examples/mnist_vae.py --latent-dim 2 --out runs/mnist-2d     # adds the 2-D manifold
    python examples/mnist_vae.py --objective iwae --k 5 --out runs/iwae5
    python examples/mnist_vae.py --out runs/mnist --epochs 60 --resume  # continue a run

Writes to --out: checkpoint.npz (see minivae/checkpoint.py for the format), metrics.json, and
reconstructions.png, samples.png, latent_space.png, interpolations.png, training.png
(and manifold.png for a 2-D latent space).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from minivae.checkpoint import load_checkpoint
from minivae.commands import (add_dataset_argument, backend_and_data, build_vae, machine, run,
                              run_parser, save_every_epoch, score_log_likelihood, train_config,
                              training_subset, write_figures, write_metrics)
from minivae.data import binarize_fixed
from minivae.evaluate import active_units
from minivae.train import SCHEDULES, TrainConfig, config_dict, train


def parse_args(argv=None):
    p = run_parser(__doc__, out="runs/mnist")
    add_dataset_argument(p)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--latent-dim", type=int, default=50)
    p.add_argument("--hidden", type=int, nargs="+", default=[200, 200],
                   help="hidden layer sizes of the encoder (the decoder mirrors them)")
    p.add_argument("--activation", default="tanh")
    p.add_argument("--likelihood", default="bernoulli",
                   choices=["bernoulli", "gaussian", "gaussian_learned"],
                   help="Gaussian likelihoods train on grey levels, Bernoulli on binarised pixels")
    p.add_argument("--sigma", type=float, default=0.1, help="decoder std of --likelihood gaussian")
    p.add_argument("--objective", default="elbo", choices=["elbo", "mc_elbo", "iwae"])
    p.add_argument("--k", type=int, default=1, help="samples per example for the objective")
    p.add_argument("--beta", type=float, default=1.0, help="weight on the KL term")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--schedule", default="exp", choices=SCHEDULES,
                   help="exp: lr decays geometrically to --lr-end; iwae: Burda et al.'s 3^i stages")
    p.add_argument("--lr-end", type=float, default=1e-4)
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz")
    p.add_argument("--eval-k", type=int, default=1000,
                   help="importance samples for the final test log-likelihood (the paper uses 5000)")
    p.add_argument("--subset", type=int, default=None,
                   help="train on the first N training images only (quick runs)")
    p.add_argument("--no-figures", action="store_true")
    return p.parse_args(argv)


def build(args, be, x_train):
    model = build_vae(args, x_train, be, args.likelihood, args.sigma)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, objective=args.objective,
                      k=args.k, beta=args.beta, lr=args.lr, schedule=args.schedule,
                      lr_end=args.lr_end, seed=args.seed, dataset=args.dataset,
                      binarize=args.likelihood == "bernoulli")
    return model, cfg


def make_figures(model, x_test, y_test, classes, history, out: Path, seed: int) -> list[str]:
    from minivae import plots
    rng = model.backend.generator("figures", seed)
    xt = model.backend.asarray(x_test[:2000], model.dtype)
    written = [plots.plot_reconstructions(model, xt, out / "reconstructions.png"),
               plots.plot_samples(model, out / "samples.png", rng),
               plots.plot_latent_space(model, model.backend.asarray(x_test, model.dtype), y_test,
                                       out / "latent_space.png", class_names=classes),
               plots.plot_interpolations(model, xt, out / "interpolations.png"),
               plots.plot_training_curves(history, out / "training.png")]
    if model.latent_dim == 2:
        written.append(plots.plot_manifold(model, out / "manifold.png"))
    return [str(p) for p in written]


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    be, ds = backend_and_data(args)
    x_train = training_subset(ds, args.subset).x_train
    print(f"{ds.name}: {x_train.shape[0]} training and {ds.x_test.shape[0]} test images from "
          f"{ds.source}; backend {be.name}")

    ckpt = out / "checkpoint.npz"
    history, start, optimizer = [], 0, None
    if args.resume:
        model, optimizer, saved = load_checkpoint(ckpt, be)
        cfg = train_config(saved["config"], epochs=args.epochs)
        history, start = saved["history"], saved["epoch"]
        print(f"resuming {ckpt} after epoch {start}")
    else:
        model, cfg = build(args, be, x_train)
    enc = " -> ".join(str(s) for s in model.encoder.sizes)
    print(f"model: encoder {enc} ({model.config['activation']}), {model.config['likelihood']} "
          f"decoder, {model.n_params:,} parameters; {cfg.objective} k={cfg.k} beta={cfg.beta}, "
          f"batch {cfg.batch_size}, {cfg.epochs} epochs, Adam lr {cfg.lr:g} ({cfg.schedule})")

    t0 = time.perf_counter()
    history = train(model, x_train, ds.x_test, cfg, optimizer, start, history,
                    on_epoch_end=save_every_epoch(ckpt, model, cfg))
    train_seconds = time.perf_counter() - t0

    x_eval = binarize_fixed(ds.x_test, cfg.seed) if cfg.binarize else ds.x_test
    scores = score_log_likelihood(model, x_eval, args.eval_k)
    n_active, _ = active_units(model, x_eval)
    run_epochs = history[start:]
    metrics = {
        "dataset": ds.name, "backend": be.name, "epochs": len(history),
        "test_nelbo": history[-1]["test_nelbo"], "test_kl": history[-1]["test_kl"], **scores,
        "active_units": n_active, "latent_dim": model.latent_dim,
        "seconds_per_epoch": float(np.mean([r["seconds"] for r in run_epochs])) if run_epochs else None,
        "train_seconds": train_seconds, "model": model.config, "train": config_dict(cfg),
        "machine": machine(), "history": history,
    }
    write_metrics(out / "metrics.json", metrics)
    print(f"test -ELBO {metrics['test_nelbo']:.2f} nats; test NLL (L_{args.eval_k}) "
          f"{scores['test_nll']:.2f} ± {scores['test_nll_se']:.2f} nats; active units "
          f"{n_active}/{model.latent_dim}; {metrics['seconds_per_epoch'] or 0:.2f} s per epoch; "
          f"evaluation {scores['eval_seconds']:.1f} s")
    if not args.no_figures:
        write_figures(make_figures, model, x_eval, ds.y_test, ds.classes, history, out, cfg.seed)
    print(f"wrote {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
