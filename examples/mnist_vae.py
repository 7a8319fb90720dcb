r"""Train a VAE (or an IWAE) on real MNIST and write its checkpoint, numbers and figures.

    python examples/mnist_vae.py                  # NumPy, minutes on 2 cores; --backend cupy: a GPU
    python examples/mnist_vae.py --latent-dim 2 --out runs/mnist-2d     # adds the 2-D manifold
    python examples/mnist_vae.py --objective iwae --k 5 --out runs/iwae5   # [--estimator dreg]
    python examples/mnist_vae.py --out runs/mnist --epochs 60 --resume  # continue a run

Writes to --out: checkpoint.npz (format: minivae/checkpoint.py), metrics.json, reconstructions.png,
samples.png, latent_space.png, interpolations.png, training.png (and manifold.png for a 2-D latent
space).  Where --out holds a checkpoint, a new run is refused: pass --resume to continue it, or
--overwrite (or another --out) to start over.

--resume continues OUT/checkpoint.npz with the model and the training settings it holds: --latent-dim,
--hidden, --activation, --likelihood, --sigma, --objective, --k, --estimator, --m, --ciwae-beta,
--beta, --lr, --schedule, --lr-end, --batch-size, --seed, --dataset and --subset come from the
checkpoint, and one of them given with a different value is refused.  --epochs, if given, sets the
new total; under --schedule exp (the default) the learning rate decays over the total, so
extending --epochs changes the rate of the epochs still to run (a resumed run is then not the same
as one longer run; under --schedule constant it is).  --eval-k, --no-figures and the data and
backend flags are this invocation's own.
"""
from __future__ import annotations

import sys
import time

from minivae.checkpoint import CheckpointError
from minivae.commands import (add_dataset_argument, add_estimator_arguments, add_resume_arguments,
                              add_training_arguments, check_resume_flags, non_negative_float,
                              parse_flags, positive_float, positive_int, run, run_parser)
from minivae.data import binarize_fixed
from minivae.evaluate import active_units
from minivae.runs import (backend_and_data, build_vae, check_batch_size, describe_training, machine,
                          output_folder, read_saved_run, refuse_to_replace, resume_run,
                          save_every_epoch, score_log_likelihood, write_figures, write_metrics)
from minivae.train import SCHEDULES, TrainConfig, config_dict, train

MODEL_FLAGS = {"latent_dim": "latent_dim", "hidden": "encoder_hidden", "activation": "activation",
               "likelihood": "likelihood", "sigma": "sigma"}       # flag -> the model's setting
TRAIN_FLAGS = ("objective", "k", "estimator", "m", "ciwae_beta", "beta", "lr", "schedule",
               "lr_end", "batch_size", "seed")                      # flags -> TrainConfig fields


def parse_args(argv=None):
    p = run_parser(__doc__, out="runs/mnist", epilog=__doc__.split("\n\n")[-1].replace("\n", " "))
    add_dataset_argument(p)
    add_training_arguments(p, latent_dim=50, epochs=30, hidden=(200, 200), lr_help=None)
    p.add_argument("--likelihood", default="bernoulli",
                   choices=["bernoulli", "gaussian", "gaussian_learned"],
                   help="Gaussian likelihoods train on grey levels, Bernoulli on binarised pixels")
    p.add_argument("--sigma", type=positive_float, default=0.1,
                   help="decoder std of --likelihood gaussian")
    p.add_argument("--objective", default="elbo", choices=["elbo", "mc_elbo", "iwae"])
    p.add_argument("--k", type=positive_int, default=1, help="samples per example for the objective")
    add_estimator_arguments(p)
    p.add_argument("--beta", type=non_negative_float, default=1.0, help="weight on the KL term")
    p.add_argument("--schedule", default="exp", choices=SCHEDULES,
                   help="exp: lr decays geometrically to --lr-end; iwae: Burda et al.'s 3^i stages")
    p.add_argument("--lr-end", type=positive_float, default=1e-4)
    add_resume_arguments(p, "continue from OUT/checkpoint.npz with its settings (see below)")
    p.add_argument("--eval-k", type=positive_int, default=1000,
                   help="importance samples for the final test log-likelihood (the paper uses 5000)")
    p.add_argument("--no-figures", action="store_true")
    return parse_flags(p, argv)


def take_saved_settings(ckpt, args) -> None:
    """Refuse a flag given with another value than the checkpoint ``ckpt`` holds; the data set,
    seed and subset of ``args`` become the checkpoint's, so the run goes on with them."""
    model, train, config = read_saved_run(ckpt)
    if model.get("type", "VAE") != "VAE":
        raise CheckpointError(f"{ckpt} holds a {model.get('type')}, which this script does not "
                              "train: continue it with examples/iwae_vs_vae.py --resume, or pass "
                              "another --out.")
    saved = {dest: model[key] for dest, key in MODEL_FLAGS.items() if key in model}
    saved.update({dest: config[dest] for dest in TRAIN_FLAGS if dest in config})
    saved.update({dest: train[dest] for dest in ("dataset", "subset") if dest in train})
    check_resume_flags(args, saved, ckpt)
    for dest in {"dataset", "seed", "subset"} & saved.keys():
        setattr(args, dest, saved[dest])


def make_figures(model, x_test, y_test, classes, history, out, seed: int) -> list:
    from minivae import plots
    rng = model.backend.generator("figures", seed)
    xt = model.backend.asarray(x_test[:2000], model.dtype)
    written = [plots.plot_reconstructions(model, xt, out / "reconstructions.png"),
               plots.plot_samples(model, out / "samples.png", rng),
               plots.plot_latent_space(model, model.backend.asarray(x_test, model.dtype), y_test,
                                       out / "latent_space.png", class_names=classes),
               plots.plot_interpolations(model, xt, out / "interpolations.png"),
               plots.plot_training_curves(history, out / "training.png")]
    return written + ([plots.plot_manifold(model, out / "manifold.png")]
                      if model.latent_dim == 2 else [])


def main(argv=None) -> int:
    args = parse_args(argv)
    out = output_folder(args.out)
    ckpt = out / "checkpoint.npz"
    if args.resume:
        take_saved_settings(ckpt, args)
    else:
        refuse_to_replace(ckpt, args)
    be, ds = backend_and_data(args, subset=args.subset)
    print(f"{ds.name}: {len(ds.x_train)} training and {ds.x_test.shape[0]} test images from "
          f"{ds.source}; backend {be.name}")

    if args.resume:
        model, optimizer, cfg, start, history, _ = resume_run(
            ckpt, be, **({"epochs": args.epochs} if "epochs" in args.given else {}))
        print(f"resuming {ckpt} after epoch {start}")
    else:
        model = build_vae(args, ds.x_train, be, args.likelihood, args.sigma)
        optimizer, start, history = None, 0, []
        cfg = TrainConfig(epochs=args.epochs, dataset=args.dataset,
                          binarize=args.likelihood == "bernoulli",
                          **{dest: getattr(args, dest) for dest in TRAIN_FLAGS})
    check_batch_size(cfg.batch_size, len(ds.x_train), "training images" + (
        f" (--subset {args.subset})" if args.subset else f" of {ds.name}"))
    print(f"model: encoder {' -> '.join(map(str, model.encoder.sizes))} ({model.config['activation']}), "
          f"{model.config['likelihood']} decoder, {model.n_params:,} parameters; "
          f"{describe_training(config_dict(cfg))}, beta {cfg.beta:g}, batch {cfg.batch_size}, "
          f"{cfg.epochs} epochs, Adam lr {cfg.lr:g} ({cfg.schedule})")

    t0 = time.perf_counter()
    history = train(model, ds.x_train, ds.x_test, cfg, optimizer, start, history,
                    on_epoch_end=save_every_epoch(ckpt, model, cfg, subset=args.subset))
    train_seconds = time.perf_counter() - t0

    x_eval = binarize_fixed(ds.x_test, cfg.seed) if cfg.binarize else ds.x_test
    scores = score_log_likelihood(model, x_eval, args.eval_k)
    n_active, _ = active_units(model, x_eval)
    run_epochs = history[start:]                                     # none: nothing left to train
    per_epoch = sum(r["seconds"] for r in run_epochs) / len(run_epochs) if run_epochs else None
    write_metrics(out / "metrics.json", {
        "dataset": ds.name, "backend": be.name, "epochs": len(history),
        "test_nelbo": history[-1]["test_nelbo"], "test_kl": history[-1]["test_kl"], **scores,
        "active_units": n_active, "latent_dim": model.latent_dim, "seconds_per_epoch": per_epoch,
        "train_seconds": train_seconds, "model": model.config, "train": config_dict(cfg),
        "machine": machine(), "history": history})
    print(f"test -ELBO {history[-1]['test_nelbo']:.2f} nats; test NLL (L_{args.eval_k}) "
          f"{scores['test_nll']:.2f} ± {scores['test_nll_se']:.2f} nats; active units "
          f"{n_active}/{model.latent_dim}; {per_epoch or 0:.2f} s per epoch; "
          f"evaluation {scores['eval_seconds']:.1f} s")
    if not args.no_figures:
        write_figures(make_figures, model, x_eval, ds.y_test, ds.classes, history, out, cfg.seed)
    print(f"wrote {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
