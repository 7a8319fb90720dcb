r"""Train a convolutional VAE (minivae.conv_vae.ConvVAE) on MNIST, Fashion-MNIST or CIFAR-10.

    python examples/conv_vae.py                                   # binarised MNIST, Bernoulli decoder
    python examples/conv_vae.py --dataset fashion-mnist           # 8-bit pixels: discretised logistic
    python examples/conv_vae.py --dataset cifar10 --epochs 25     # colour, for a user who has CIFAR-10
    python examples/conv_vae.py --objective iwae --k 5 --out runs/conv-iwae5    # [--estimator dreg]
    python examples/conv_vae.py --out runs/conv --epochs 20 --resume            # continue a run

The encoder is a 3x3 convolution and residual blocks that halve the image, the decoder their
mirror with transposed convolutions (the architecture: minivae/conv_vae.py).  MNIST trains on
dynamically binarised pixels with a Bernoulli decoder; Fashion-MNIST and CIFAR-10 on their 8-bit
pixels with the discretised logistic (PixelCNN++), scored in bits per dimension as well as nats.
Writes to --out: checkpoint.npz, metrics.json, reconstructions.png, samples.png (a 7x7 grid),
interpolations.png, training.png; in colour for CIFAR-10.  A saved run is refused unless --resume
continues it or --overwrite replaces it.

--resume continues OUT/checkpoint.npz with the model and training settings it holds (--latent-dim,
--channels, --activation, --likelihood, --objective, --k, --estimator, --m, --ciwae-beta, --lr,
--batch-size, --seed, --dataset, --subset: another value given is refused); --epochs sets the new
total.  --eval-k, --eval-n, --no-figures and the data and backend flags are this invocation's own.
"""
from __future__ import annotations

import sys
import time

from minivae.checkpoint import CheckpointError
from minivae.commands import (add_dataset_argument, add_estimator_arguments, add_resume_arguments,
                              check_resume_flags, parse_flags, positive_float, positive_int, run,
                              run_parser)
from minivae.conv_vae import ConvVAE
from minivae.data import binarize_fixed
from minivae.evaluate import active_units
from minivae.layers import ACTIVATIONS
from minivae.likelihoods import bits_per_dim
from minivae.runs import (backend_and_data, check_batch_size, check_count, describe_training, machine,
                          output_folder, read_saved_run, refuse_to_replace, resume_run,
                          save_every_epoch, score_log_likelihood, write_figures, write_metrics)
from minivae.train import TrainConfig, config_dict, train

MODEL_FLAGS = ("latent_dim", "channels", "activation", "likelihood")      # the model's settings
TRAIN_FLAGS = ("objective", "k", "estimator", "m", "ciwae_beta", "lr", "batch_size", "seed")


def parse_args(argv=None):
    p = run_parser(__doc__, out="runs/conv", epilog=__doc__.split("\n\n")[-1].replace("\n", " "))
    add_dataset_argument(p)
    p.add_argument("--epochs", type=positive_int, default=10)
    p.add_argument("--subset", type=positive_int, help="train on the first N training images only")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--latent-dim", type=positive_int, default=32)
    p.add_argument("--channels", type=positive_int, nargs="+", default=[32, 64, 64],
                   help="channels of each resolution; each stage after the first halves the image")
    p.add_argument("--activation", default="elu", choices=list(ACTIVATIONS),
                   help="elu: with relu the latent code collapsed (see minivae/conv_vae.py)")
    p.add_argument("--likelihood", choices=["bernoulli", "discretized_logistic"],
                   help="default: bernoulli (binarised) for mnist, discretized_logistic otherwise")
    p.add_argument("--objective", default="elbo", choices=["elbo", "mc_elbo", "iwae"])
    p.add_argument("--k", type=positive_int, default=1, help="samples per example for the objective")
    add_estimator_arguments(p)
    p.add_argument("--lr", type=positive_float, default=1e-3, help="decays geometrically to lr / 10")
    add_resume_arguments(p, "continue from OUT/checkpoint.npz with its settings (see below)")
    p.add_argument("--eval-k", type=positive_int, default=100,
                   help="importance samples for the final test log-likelihood")
    p.add_argument("--eval-n", type=positive_int, help="test images to score (default all)")
    p.add_argument("--no-figures", action="store_true")
    args = parse_flags(p, argv)
    if args.likelihood is None:
        args.likelihood = "bernoulli" if args.dataset == "mnist" else "discretized_logistic"
    return args


def take_saved_settings(ckpt, args) -> None:
    """Refuse a flag given with another value than the checkpoint ``ckpt`` holds; the data set,
    seed and subset of ``args`` become the checkpoint's."""
    model, train_dict, config = read_saved_run(ckpt)
    if model.get("type") != "ConvVAE":
        raise CheckpointError(f"{ckpt} holds a {model.get('type')}, not a ConvVAE: continue it with "
                              "examples/mnist_vae.py --resume, or pass another --out.")
    saved = {dest: model[dest] for dest in MODEL_FLAGS if dest in model}
    saved.update({dest: config[dest] for dest in TRAIN_FLAGS if dest in config})
    saved.update({dest: train_dict[dest] for dest in ("dataset", "subset") if dest in train_dict})
    check_resume_flags(args, saved, ckpt)
    for dest in {"dataset", "seed", "subset", "likelihood"} & saved.keys():
        setattr(args, dest, saved[dest])


def make_figures(model, x_test, history, out, seed: int) -> list:
    from minivae import plots
    xt = model.backend.asarray(x_test[:100], model.dtype)
    return [plots.plot_reconstructions(model, xt, out / "reconstructions.png"),
            plots.plot_samples(model, out / "samples.png", model.backend.generator("figures", seed),
                               n=7),
            plots.plot_interpolations(model, xt, out / "interpolations.png"),
            plots.plot_training_curves(history, out / "training.png")]


def main(argv=None) -> int:
    args = parse_args(argv)
    out = output_folder(args.out)
    ckpt = out / "checkpoint.npz"
    take_saved_settings(ckpt, args) if args.resume else refuse_to_replace(ckpt, args)
    be, ds = backend_and_data(args, subset=args.subset)
    print(f"{ds.name}: {len(ds.x_train)} training and {len(ds.x_test)} test images "
          f"{ds.image_shape} from {ds.source}; backend {be.name}")
    if args.resume:
        model, optimizer, cfg, start, history, _ = resume_run(
            ckpt, be, **({"epochs": args.epochs} if "epochs" in args.given else {}))
        print(f"resuming {ckpt} after epoch {start}")
    else:
        model = ConvVAE(ds.image_shape, args.latent_dim, args.channels, args.activation,
                        args.likelihood, seed=args.seed, backend=be)
        model.init_output_bias(ds.x_train.mean(axis=0))
        optimizer, start, history = None, 0, []
        cfg = TrainConfig(epochs=args.epochs, schedule="exp", lr_end=args.lr / 10,
                          dataset=args.dataset, binarize=args.likelihood == "bernoulli",
                          **{dest: getattr(args, dest) for dest in TRAIN_FLAGS})
    check_batch_size(cfg.batch_size, len(ds.x_train), "training images")
    check_count(args.eval_n, len(ds.x_test), "--eval-n", "test images")
    x_test = ds.x_test[: args.eval_n]
    print(f"model: ConvVAE channels {model.config['channels']}, latent {model.latent_dim}, "
          f"{model.config['likelihood']} decoder, {model.n_params:,} parameters; "
          f"{describe_training(config_dict(cfg))}, batch {cfg.batch_size}, {cfg.epochs} epochs")

    t0 = time.perf_counter()
    history = train(model, ds.x_train, x_test, cfg, optimizer, start, history,
                    on_epoch_end=save_every_epoch(ckpt, model, cfg, subset=args.subset))
    train_seconds = time.perf_counter() - t0

    x_eval = binarize_fixed(x_test, cfg.seed) if cfg.binarize else x_test
    scores = score_log_likelihood(model, x_eval, args.eval_k)
    bpd = (bits_per_dim(scores["test_nll"], model.x_dim)            # the unit for 8-bit pixels
           if model.likelihood.name == "discretized_logistic" else None)
    n_active, _ = active_units(model, x_eval)
    write_metrics(out / "metrics.json", {
        "dataset": ds.name, "backend": be.name, "epochs": len(history),
        "test_nelbo": history[-1]["test_nelbo"], **scores, "test_bits_per_dim": bpd,
        "active_units": n_active, "train_seconds": train_seconds, "model": model.config,
        "train": config_dict(cfg), "machine": machine(), "history": history})
    print(f"test -ELBO {history[-1]['test_nelbo']:.2f} nats; test NLL (L_{args.eval_k}) "
          f"{scores['test_nll']:.2f} ± {scores['test_nll_se']:.2f} nats"
          f"{f' = {bpd:.3f} bits/dim' if bpd else ''}; "
          f"active units {n_active}/{model.latent_dim}; evaluation {scores['eval_seconds']:.1f} s")
    if not args.no_figures:
        write_figures(make_figures, model, x_eval, history, out, cfg.seed)
    print(f"wrote {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
