r"""Latent arithmetic: an attribute vector added to codes with a range of weights, and interpolation.

    python examples/latent_arithmetic.py                     # trains a VAE, thick minus thin strokes
    python examples/latent_arithmetic.py --attribute class --from 1 --to 7
    python examples/latent_arithmetic.py --checkpoint runs/mnist/checkpoint.npz   # no training
    python examples/latent_arithmetic.py --interpolation spherical --backend cupy

An attribute vector is the difference of the mean codes of two groups of images (White 2016,
"Sampling Generative Networks"; the "smile vector"):

    v = (1/|A|) sum_{x in A} mu(x)  -  (1/|B|) sum_{x in B} mu(x)        (D,)

Adding w v to the code mu(x) of an input and decoding, decode(mu(x) + w v), moves the input
towards group A for w > 0 and towards group B for w < 0; w = 0 is the reconstruction.

--attribute thickness (default): A = training digits whose stroke width
    (:func:`minivae.analysis.stroke_thickness`, 2 ink / outline length) is in the top quarter of
    their class, B = the bottom quarter.  Taking the quarters within each class keeps the class
    out of the vector: it thickens a 2 without turning it into an 8.
--attribute class --from a --to b: A = training digits of class b, B = those of class a, so
    adding v (w = 1) carries an "a" towards a "b": v = mean code of b - mean code of a.

The printed table measures what the vector did to the decoded images, weight by weight: their mean
stroke width (thickness; decoded means have soft edges, so even w = 0 measures wider than the
data's 1.9 pixels), or (class) the share that lie nearer, in pixels, to the mean image of class b
than to that of class a.

Writes to --out (default runs/latent_arithmetic): metrics.json, checkpoint.npz (unless
--checkpoint), attribute.png (rows = test digits: input, then decode(mu + w v) for w in
linspace(-2, 2, 9)), interpolations.png (decoded paths between the codes of pairs of test
digits, linear in mu, or spherical with --interpolation spherical).  Training does not replace
a model saved in --out: pass --checkpoint OUT/checkpoint.npz to use it, or --overwrite (or
another --out) to train anew.  With --checkpoint nothing is trained, so the flags that shape the
training (--epochs, --batch-size, --latent-dim, --hidden, --activation, --lr) are refused.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from minivae import get_backend, to_host
from minivae.analysis import attribute_vector, decode_along, quantile_split, stroke_thickness
from minivae.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from minivae.commands import (CommandError, add_dataset_argument, add_overwrite_argument,
                              add_short_training_arguments, at_least, build_vae, check_batch_size,
                              fraction, non_negative_int, output_folder, parse_flags,
                              positive_float, positive_int, refuse_to_replace, run, run_parser,
                              short_training_config, train_state, training_subset, write_figures,
                              write_metrics)
from minivae.data import binarize_fixed, load_dataset

TRAINING_FLAGS = ("epochs", "batch_size", "latent_dim", "hidden", "activation", "lr")
from minivae.train import train


def parse_args(argv=None):
    p = run_parser(__doc__, out="runs/latent_arithmetic")
    add_dataset_argument(p, default=None, help_text="default: the checkpoint's, else mnist")
    p.add_argument("--checkpoint", default=None,
                   help="a trained model (e.g. from examples/mnist_vae.py) to use instead of "
                        "training one")
    p.add_argument("--attribute", default="thickness", choices=["thickness", "class"])
    p.add_argument("--from", dest="class_from", type=non_negative_int, default=1,
                   help="class a (--attribute class)")
    p.add_argument("--to", dest="class_to", type=non_negative_int, default=7,
                   help="class b (--attribute class)")
    p.add_argument("--quantile", type=fraction, default=0.25,
                   help="thick = top, thin = bottom quantile of stroke width within each class; "
                        "in (0, 0.5]")
    p.add_argument("--max-weight", type=positive_float, default=2.0,
                   help="weights run over +-this")
    p.add_argument("--n-weights", type=at_least(2), default=9)
    p.add_argument("--n-digits", type=positive_int, default=8,
                   help="test digits (rows) in attribute.png")
    p.add_argument("--interpolation", default="linear", choices=["linear", "spherical"])
    p.add_argument("--steps", type=at_least(2), default=10,
                   help="points on each interpolation path")
    add_short_training_arguments(p, latent_dim=16)
    add_overwrite_argument(p, "a trained model (checkpoint.npz)")
    args = parse_flags(p, argv)
    if args.attribute == "class" and args.class_from == args.class_to:
        p.error(f"--from and --to name the same class ({args.class_from}): the vector would be 0")
    ignored = [f"--{dest.replace('_', '-')}" for dest in TRAINING_FLAGS if dest in args.given]
    if args.checkpoint and ignored:
        p.error(f"{' '.join(ignored)}: with --checkpoint nothing is trained, so training "
                "flags have no effect; drop them")
    return args


# ---------------------------------------------------------------- the model

def get_model(args, be, ds, x_train, out: Path):
    """Load --checkpoint, or train a VAE on binarised x_train and save it to out/checkpoint.npz.

    Returns (model, binarize, note): whether the model reads binarised inputs, and what it is.
    """
    if args.checkpoint:
        model, _, state = load_checkpoint(args.checkpoint, be, with_optimizer=False)
        if model.x_dim != x_train.shape[1]:
            raise CheckpointError(f"{args.checkpoint} holds a model of {model.x_dim} pixels but "
                                  f"{ds.name} images have {x_train.shape[1]}.")
        return model, state.get("binarize", True), f"checkpoint {args.checkpoint}"
    check_batch_size(args.batch_size, x_train.shape[0])
    model = build_vae(args, x_train, be)
    cfg = short_training_config(args, dataset=ds.name)
    history = train(model, x_train, ds.x_test, cfg)
    save_checkpoint(out / "checkpoint.npz", model, None, train_state(cfg, cfg.epochs, history))
    return model, True, f"trained {cfg.epochs} epochs on {x_train.shape[0]} images"


# ---------------------------------------------------------------- the attribute

def groups(args, x_train, y_train, classes):
    """Boolean masks (A, B) over the training images, and a name for the direction B -> A."""
    if args.attribute == "thickness":
        thick, thin = quantile_split(stroke_thickness(x_train), args.quantile, groups=y_train)
        return thick, thin, "thin -> thick"
    return y_train == args.class_to, y_train == args.class_from, \
        f"{classes[args.class_from]} -> {classes[args.class_to]}"


def rows_to_show(args, y_test):
    """Indices of the test digits in attribute.png: one per class 0, 1, ..., or from / to."""
    pattern = list(range(10)) if args.attribute == "thickness" else [args.class_from, args.class_to]
    classes = [pattern[i % len(pattern)] for i in range(args.n_digits)]
    for c in set(classes):
        if classes.count(c) > (y_test == c).sum():
            raise CommandError(f"--n-digits {args.n_digits} needs {classes.count(c)} test digits "
                               f"of class {c} but there are {(y_test == c).sum()}: pass a "
                               "smaller --n-digits.")
    # the i-th row shows the next unused test digit of its class
    return [int(np.flatnonzero(y_test == c)[classes[:i].count(c)]) for i, c in enumerate(classes)]


def measure(args, decoded, x_train, y_train, classes):
    """(name, (W,) values): mean stroke width, or the share nearer to class b's mean image."""
    R, W, P = decoded.shape
    flat = decoded.reshape(R * W, P)
    if args.attribute == "thickness":
        return "mean stroke width (px)", stroke_thickness(flat).reshape(R, W).mean(axis=0)
    mean_a = x_train[y_train == args.class_from].mean(axis=0)
    mean_b = x_train[y_train == args.class_to].mean(axis=0)
    nearer_b = ((flat - mean_b) ** 2).sum(1) < ((flat - mean_a) ** 2).sum(1)
    return f"share nearer to a {classes[args.class_to]} than a {classes[args.class_from]}", \
        nearer_b.reshape(R, W).mean(axis=0)


# ---------------------------------------------------------------- main

def main(argv=None) -> int:
    args = parse_args(argv)
    out = output_folder(args.out)
    if not args.checkpoint:
        refuse_to_replace(out / "checkpoint.npz", args,
                          f"pass --checkpoint {out / 'checkpoint.npz'} to use it")
    be = get_backend(args.backend, args.seed)
    dataset = args.dataset
    if dataset is None and args.checkpoint:          # the checkpoint says what it was trained on
        dataset = read_checkpoint(args.checkpoint)[0].get("train", {}).get("dataset")
    ds = training_subset(load_dataset(dataset or "mnist", args.data_dir, args.offline), args.subset)
    for c in (args.class_from, args.class_to):
        if args.attribute == "class" and not 0 <= c < len(ds.classes):
            raise CommandError(f"class {c} does not exist: {ds.name} has classes 0.."
                               f"{len(ds.classes) - 1}; pass --from and --to in that range.")
    x_train, y_train = ds.x_train, ds.y_train
    idx = rows_to_show(args, ds.y_test)              # the test digits to show: enough of them?
    print(f"{ds.name}: {x_train.shape[0]} training and {ds.x_test.shape[0]} test images; "
          f"backend {be.name}")

    t0 = time.perf_counter()
    model, binarized, note = get_model(args, be, ds, x_train, out)
    seconds = time.perf_counter() - t0

    # the encoder sees what it was trained on: binarised digits (fixed draw) or grey levels
    def inputs(x, seed):
        return binarize_fixed(x, seed) if binarized else x

    in_a, in_b, direction = groups(args, x_train, y_train, ds.classes)
    v = attribute_vector(model, inputs(x_train[in_a], args.seed), inputs(x_train[in_b], args.seed))
    print(f"model: {note}; attribute {direction}: groups of {in_a.sum()} and {in_b.sum()} "
          f"training images, |v| = {float(to_host(model.xp.linalg.norm(v))):.2f}")

    # decode(mu(x) + w v) for the chosen test digits and every weight
    x_show = inputs(ds.x_test, args.seed)[idx]                                       # (R, P)
    weights = np.linspace(-args.max_weight, args.max_weight, args.n_weights)         # (W,)
    decoded = to_host(decode_along(model, x_show, v, weights))                       # (R, W, P)
    what, values = measure(args, decoded, x_train, y_train, ds.classes)
    print(f"\n{'weight':>7}  {what}")
    for wt, val in zip(weights, values):
        print(f"{wt:7.2f}  {val:.3f}")

    pairs = [(2 * i, 2 * i + 1) for i in range(5)]      # interpolations: test images 0-1, 2-3, ...
    write_metrics(out / "metrics.json", {
        "dataset": ds.name, "backend": be.name, "model": model.config, "source": note,
        "train_seconds": seconds, "attribute": args.attribute, "direction": direction,
        "group_sizes": [int(in_a.sum()), int(in_b.sum())],
        "vector": to_host(v).astype(float).tolist(), "test_indices": idx,
        "weights": weights.tolist(), "measure": what, "values": values.tolist(),
        "interpolation": args.interpolation, "pairs": pairs})

    def make_figures():
        from minivae import plots
        names = ds.classes
        return [
            plots.labelled_grid(np.concatenate([x_show[:, None], decoded], axis=1),
                                out / "attribute.png", [names[ds.y_test[i]] for i in idx],
                                f"input, then decode(mu + w v), v: {direction}",
                                col_labels=["input"] + [f"{wt:g}" for wt in weights]),
            plots.plot_interpolations(
                model, inputs(ds.x_test[:10], args.seed), out / "interpolations.png", pairs,
                args.steps, args.interpolation,
                [f"{names[ds.y_test[a]]}\u2192{names[ds.y_test[b]]}" for a, b in pairs],
                f"input, decoded {args.interpolation} path between the codes, input"),
        ]

    write_figures(make_figures)
    print(f"model ready in {seconds:.0f} s; wrote {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
