r"""Train a VAE (or an IWAE) on real MNIST and write its checkpoint, numbers and figures.

    python examples/mnist_vae.py                       # NumPy on the CPU, a few minutes on 2 cores
    python examples/mnist_vae.py --backend cupy        # the same on an NVIDIA GPU
    python examples/mnist_vae.py --latent-dim 2 --out runs/mnist-2d     # adds the 2-D manifold
    python examples/mnist_vae.py --objective iwae --k 5 --out runs/iwae5
    python examples/mnist_vae.py --objective iwae --k 5 --estimator dreg --out runs/dreg5
    python examples/mnist_vae.py --out runs/mnist --epochs 60 --resume  # continue a run

Writes to --out: checkpoint.npz (see minivae/checkpoint.py for the format), metrics.json, and
reconstructions.png, samples.png, latent_space.png, interpolations.png, training.png
(and manifold.png for a 2-D latent space).  A new run does not replace a saved one: where --out
holds a checkpoint, pass --resume to continue it, or --overwrite (or another --out) to start over.

--resume continues OUT/checkpoint.npz with the model and the training settings it holds:
--latent-dim, --hidden, --activation, --likelihood, --sigma, --objective, --k, --estimator, --m,
--ciwae-beta, --beta, --lr,
--schedule, --lr-end, --batch-size, --seed, --dataset and --subset come from the checkpoint, and
one of them given with a different value is refused.  --epochs, if given, sets the new total
(else the checkpoint's total stands); under --schedule exp (the default) the learning rate decays
over the total, so extending --epochs changes the rate of the epochs still to run: a run resumed
with more epochs is not the same as one longer run (under --schedule constant it is).  --eval-k,
--no-figures and the data and backend flags are this invocation's own.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from minivae.checkpoint import CheckpointError, load_checkpoint, read_checkpoint
from minivae.commands import (add_dataset_argument, add_overwrite_argument, backend_and_data,
                              build_vae, check_batch_size, check_resume_flags, fraction_01,
                              machine, non_negative_float, output_folder, parse_flags, positive_float,
                              positive_int, refuse_to_replace, resumed_config, run, run_parser,
                              save_every_epoch, score_log_likelihood, training_subset,
                              write_figures, write_metrics)
from minivae.data import binarize_fixed
from minivae.evaluate import active_units
from minivae.layers import ACTIVATIONS
from minivae.objectives import ESTIMATORS
from minivae.train import SCHEDULES, TrainConfig, config_dict, train

RESUME_HELP = (__doc__.split("\n\n")[-1]).replace("\n", " ")


def parse_args(argv=None):
    p = run_parser(__doc__, out="runs/mnist", epilog=RESUME_HELP)
    add_dataset_argument(p)
    p.add_argument("--epochs", type=positive_int, default=30)
    p.add_argument("--batch-size", type=positive_int, default=100)
    p.add_argument("--latent-dim", type=positive_int, default=50)
    p.add_argument("--hidden", type=positive_int, nargs="+", default=[200, 200],
                   help="hidden layer sizes of the encoder (the decoder mirrors them)")
    p.add_argument("--activation", default="tanh", choices=list(ACTIVATIONS))
    p.add_argument("--likelihood", default="bernoulli",
                   choices=["bernoulli", "gaussian", "gaussian_learned"],
                   help="Gaussian likelihoods train on grey levels, Bernoulli on binarised pixels")
    p.add_argument("--sigma", type=positive_float, default=0.1,
                   help="decoder std of --likelihood gaussian")
    p.add_argument("--objective", default="elbo", choices=["elbo", "mc_elbo", "iwae"])
    p.add_argument("--k", type=positive_int, default=1, help="samples per example for the objective")
    p.add_argument("--estimator", default=None, choices=list(ESTIMATORS),
                   help="with --objective iwae: the gradient estimator (stl, dreg: the encoder's "
                        "path only; miwae, piwae: --m groups of --k; ciwae: --ciwae-beta)")
    p.add_argument("--m", type=positive_int, default=1, help="groups of --k samples (miwae, piwae)")
    p.add_argument("--ciwae-beta", type=fraction_01, default=0.5,
                   help="ciwae: beta ELBO + (1 - beta) IWAE")
    p.add_argument("--beta", type=non_negative_float, default=1.0, help="weight on the KL term")
    p.add_argument("--lr", type=positive_float, default=1e-3)
    p.add_argument("--schedule", default="exp", choices=SCHEDULES,
                   help="exp: lr decays geometrically to --lr-end; iwae: Burda et al.'s 3^i stages")
    p.add_argument("--lr-end", type=positive_float, default=1e-4)
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue from OUT/checkpoint.npz with its settings (see below)")
    add_overwrite_argument(again)
    p.add_argument("--eval-k", type=positive_int, default=1000,
                   help="importance samples for the final test log-likelihood (the paper uses 5000)")
    p.add_argument("--subset", type=positive_int, default=None,
                   help="train on the first N training images only (quick runs)")
    p.add_argument("--no-figures", action="store_true")
    return parse_flags(p, argv)


def saved_settings(ckpt, args) -> dict:
    """What the checkpoint ``ckpt`` holds, by flag: refused where a flag given differs; the
    data set, seed and subset of ``args`` become the checkpoint's, so the run goes on with them."""
    meta, _ = read_checkpoint(ckpt)
    model, train = meta.get("model") or {}, meta.get("train") or {}
    if model.get("type", "VAE") != "VAE":
        raise CheckpointError(f"{ckpt} holds a {model.get('type')}, which this script does not "
                              "train: continue it with examples/iwae_vs_vae.py --resume, or pass "
                              "another --out.")
    config = train.get("config") if isinstance(train.get("config"), dict) else {}
    saved = {dest: model[key] for dest, key in (
        ("latent_dim", "latent_dim"), ("hidden", "encoder_hidden"), ("activation", "activation"),
        ("likelihood", "likelihood"), ("sigma", "sigma")) if key in model}
    saved.update({dest: config[dest] for dest in ("objective", "k", "beta", "lr", "schedule",
                                                  "lr_end", "batch_size", "seed", "estimator", "m",
                                                  "ciwae_beta") if dest in config})
    saved.update({dest: train[dest] for dest in ("dataset", "subset") if dest in train})
    check_resume_flags(args, saved, ckpt)
    for dest in ("dataset", "seed", "subset"):
        if dest in saved:
            setattr(args, dest, saved[dest])
    return saved


def build(args, be, x_train):
    model = build_vae(args, x_train, be, args.likelihood, args.sigma)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, objective=args.objective,
                      k=args.k, beta=args.beta, lr=args.lr, schedule=args.schedule,
                      lr_end=args.lr_end, seed=args.seed, dataset=args.dataset,
                      binarize=args.likelihood == "bernoulli", estimator=args.estimator, m=args.m,
                      ciwae_beta=args.ciwae_beta)
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
    out = output_folder(args.out)
    ckpt = out / "checkpoint.npz"
    if args.resume:
        saved_settings(ckpt, args)
    else:
        refuse_to_replace(ckpt, args)
    be, ds = backend_and_data(args)
    x_train = training_subset(ds, args.subset).x_train
    print(f"{ds.name}: {x_train.shape[0]} training and {ds.x_test.shape[0]} test images from "
          f"{ds.source}; backend {be.name}")

    history, start, optimizer = [], 0, None
    if args.resume:
        model, optimizer, saved = load_checkpoint(ckpt, be)
        cfg = resumed_config(ckpt, saved, **({"epochs": args.epochs} if "epochs" in args.given
                                             else {}))
        history, start = saved["history"], saved["epoch"]
        print(f"resuming {ckpt} after epoch {start}")
    else:
        model, cfg = build(args, be, x_train)
    check_batch_size(cfg.batch_size, x_train.shape[0], "training images" + (
        f" (--subset {args.subset})" if args.subset else f" of {ds.name}"))
    enc = " -> ".join(str(s) for s in model.encoder.sizes)
    print(f"model: encoder {enc} ({model.config['activation']}), {model.config['likelihood']} "
          f"decoder, {model.n_params:,} parameters; {cfg.objective} k={cfg.k} beta={cfg.beta}"
          f"{f', {cfg.estimator} gradient' if cfg.estimator else ''}, "
          f"batch {cfg.batch_size}, {cfg.epochs} epochs, Adam lr {cfg.lr:g} ({cfg.schedule})")

    t0 = time.perf_counter()
    history = train(model, x_train, ds.x_test, cfg, optimizer, start, history,
                    on_epoch_end=save_every_epoch(ckpt, model, cfg, subset=args.subset))
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
