r"""Latent arithmetic: an attribute vector added to codes with a range of weights, and interpolation.

    python examples/latent_arithmetic.py                     # trains a VAE, thick minus thin strokes
    python examples/latent_arithmetic.py --attribute class --from 1 --to 7 --interpolation spherical
    python examples/latent_arithmetic.py --checkpoint runs/mnist/checkpoint.npz   # no training

v is the mean code of a group A of training images minus that of a group B (White 2016;
:func:`minivae.analysis.attribute_vector`); decode(mu(x) + w v) moves x towards A for w > 0.
--attribute thickness: A and B are the top and the bottom quarter of stroke width within each
class (a thicker 2, not an 8); --attribute class --from a --to b: A is class b, B class a.  The
table measures, per weight, the decoded images' mean stroke width (even w = 0 measures wider than
the data's 1.9 pixels: decoded means have soft edges) or their share nearer to class b's mean image.

Writes to --out: metrics.json, checkpoint.npz (unless --checkpoint), attribute.png (inputs, then
decode(mu + w v) per weight) and interpolations.png (decoded paths between pairs of codes).  A
saved model is not replaced: pass --checkpoint OUT/checkpoint.npz to use it, or --overwrite.
"""
from __future__ import annotations

import sys
import time

import numpy as np

from minivae.analysis import attribute_vector, decode_along, quantile_split, stroke_thickness
from minivae.checkpoint import load_checkpoint, save_checkpoint
from minivae.commands import (add_dataset_argument, add_overwrite_argument, add_training_arguments,
                              at_least, fraction, non_negative_int, parse_flags, positive_float,
                              positive_int, run, run_parser)
from minivae.data import binarize_fixed
from minivae.runs import (CommandError, backend_and_data, build_vae, check_batch_size,
                          output_folder, read_saved_run, refuse_to_replace, short_training_config,
                          train_state, write_figures, write_metrics)
from minivae.train import train

TRAINING_FLAGS = ("epochs", "batch_size", "latent_dim", "hidden", "activation", "lr")


def parse_args(argv=None):
    p = run_parser(__doc__, out="runs/latent_arithmetic")
    add_dataset_argument(p, default=None, help_text="default: the checkpoint's, else mnist")
    p.add_argument("--checkpoint", default=None, help="a trained model, used instead of training")
    p.add_argument("--attribute", default="thickness", choices=["thickness", "class"])
    p.add_argument("--from", dest="class_from", type=non_negative_int, default=1, help="class a")
    p.add_argument("--to", dest="class_to", type=non_negative_int, default=7, help="class b")
    p.add_argument("--quantile", type=fraction, default=0.25, help="thick, thin: top, bottom, per class")
    p.add_argument("--max-weight", type=positive_float, default=2.0, help="weights run over +-this")
    p.add_argument("--n-weights", type=at_least(2), default=9)
    p.add_argument("--n-digits", type=positive_int, default=8, help="rows of attribute.png")
    p.add_argument("--interpolation", default="linear", choices=["linear", "spherical"])
    p.add_argument("--steps", type=at_least(2), default=10, help="points on each interpolation")
    add_training_arguments(p, latent_dim=16)
    add_overwrite_argument(p, "a trained model (checkpoint.npz)")
    args = parse_flags(p, argv)
    if args.attribute == "class" and args.class_from == args.class_to:
        p.error(f"--from and --to name the same class ({args.class_from}): the vector would be 0")
    ignored = " ".join(f"--{dest.replace('_', '-')}" for dest in TRAINING_FLAGS if dest in args.given)
    if args.checkpoint and ignored:
        p.error(f"{ignored}: with --checkpoint nothing is trained, so training flags have no effect")
    return args


def attribute(args, ds):
    """The attribute: its groups A and B (boolean masks over the training images), its direction
    B -> A, and its measure: a name, and a value per decoded image (N, P) -> (N,)."""
    a, b = args.class_from, args.class_to
    if args.attribute == "thickness":         # quantiles within each class keep the class out
        thick, thin = quantile_split(stroke_thickness(ds.x_train), args.quantile, groups=ds.y_train)
        return thick, thin, "thin -> thick", ("mean stroke width (px)", stroke_thickness)
    mean_a, mean_b = (ds.x_train[ds.y_train == c].mean(axis=0) for c in (a, b))

    def nearer_b(x):                          # nearer, in pixels, to class b's mean image
        return ((x - mean_b) ** 2).sum(1) < ((x - mean_a) ** 2).sum(1)
    return (ds.y_train == b, ds.y_train == a, f"{ds.classes[a]} -> {ds.classes[b]}",
            (f"share nearer to a {ds.classes[b]} than a {ds.classes[a]}", nearer_b))


def rows_to_show(args, ds):
    """Indices of the test digits in attribute.png: the next of class 0, 1, ..., or from, to, ..."""
    pattern = list(range(10)) if args.attribute == "thickness" else [args.class_from, args.class_to]
    classes = [pattern[i % len(pattern)] for i in range(args.n_digits)]
    for c in pattern:
        if c >= len(ds.classes):
            raise CommandError(f"class {c} does not exist: {ds.name} has classes 0.."
                               f"{len(ds.classes) - 1}; pass --from and --to in that range.")
        if classes.count(c) > (ds.y_test == c).sum():
            raise CommandError(f"--n-digits {args.n_digits} needs {classes.count(c)} test digits "
                               f"of class {c} but there are {(ds.y_test == c).sum()}: pass a "
                               "smaller --n-digits.")
    return [int(np.flatnonzero(ds.y_test == c)[classes[:i].count(c)]) for i, c in enumerate(classes)]


def main(argv=None) -> int:
    args = parse_args(argv)
    out = output_folder(args.out)
    if not args.checkpoint:
        refuse_to_replace(out / "checkpoint.npz", args,
                          f"pass --checkpoint {out / 'checkpoint.npz'} to use it")
    saved = read_saved_run(args.checkpoint)[1].get("dataset") if args.checkpoint else None
    be, ds = backend_and_data(args, args.dataset or saved or "mnist", args.subset)  # its data
    idx = rows_to_show(args, ds)                     # the test digits to show: are there enough?
    print(f"{ds.name}: {len(ds.x_train)} training and {len(ds.x_test)} test images; backend {be.name}")
    t0 = time.perf_counter()
    if args.checkpoint:         # a model of other images than ds's is refused at its first encode
        model, _, state = load_checkpoint(args.checkpoint, be, with_optimizer=False)
        binarized, note = state.get("binarize", True), f"checkpoint {args.checkpoint}"
    else:                       # a VAE trained on the binarised training images, and saved
        check_batch_size(args.batch_size, ds.x_train.shape[0])
        model, cfg = build_vae(args, ds.x_train, be), short_training_config(args, dataset=ds.name)
        history = train(model, ds.x_train, ds.x_test, cfg)
        save_checkpoint(out / "checkpoint.npz", model, None, train_state(cfg, cfg.epochs, history))
        binarized, note = True, f"trained {cfg.epochs} epochs on {ds.x_train.shape[0]} images"
    seconds = time.perf_counter() - t0

    def inputs(x):        # what the encoder was trained on: binarised digits (fixed draw) or not
        return binarize_fixed(x, args.seed) if binarized else x

    in_a, in_b, direction, (what, measure) = attribute(args, ds)
    v = attribute_vector(model, inputs(ds.x_train[in_a]), inputs(ds.x_train[in_b]))      # (D,)
    print(f"model: {note}; attribute {direction}: groups of {in_a.sum()} and {in_b.sum()} "
          f"training images, |v| = {float(be.to_host(model.xp.linalg.norm(v))):.2f}")
    x_show = inputs(ds.x_test)[idx]                                                  # (R, P)
    weights = np.linspace(-args.max_weight, args.max_weight, args.n_weights)         # (W,)
    decoded = be.to_host(decode_along(model, x_show, v, weights))    # decode(mu + w v): (R, W, P)
    values = measure(decoded.reshape(-1, decoded.shape[2])).reshape(decoded.shape[:2]).mean(0)
    print(f"\n{'weight':>7}  {what}", *(f"{wt:7.2f}  {val:.3f}" for wt, val in zip(weights, values)),
          sep="\n")
    pairs = [(2 * i, 2 * i + 1) for i in range(5)]      # interpolations: test images 0-1, 2-3, ...
    write_metrics(out / "metrics.json", {
        "dataset": ds.name, "backend": be.name, "model": model.config, "source": note,
        "train_seconds": seconds, "attribute": args.attribute, "direction": direction,
        "group_sizes": [int(in_a.sum()), int(in_b.sum())], "vector": be.to_host(v).tolist(),
        "test_indices": idx, "weights": weights.tolist(), "measure": what,
        "values": values.tolist(), "interpolation": args.interpolation, "pairs": pairs})

    def make_figures():
        from minivae import plots
        names = ds.classes
        return [plots.labelled_grid(np.concatenate([x_show[:, None], decoded], axis=1),
                                    out / "attribute.png", [names[ds.y_test[i]] for i in idx],
                                    f"input, then decode(mu + w v), v: {direction}",
                                    col_labels=["input"] + [f"{wt:g}" for wt in weights]),
                plots.plot_interpolations(
                    model, inputs(ds.x_test[:10]), out / "interpolations.png", pairs, args.steps,
                    args.interpolation,
                    [f"{names[ds.y_test[a]]}\u2192{names[ds.y_test[b]]}" for a, b in pairs],
                    f"input, decoded {args.interpolation} path between the codes, input")]

    write_figures(make_figures)
    print(f"model ready in {seconds:.0f} s; wrote {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
