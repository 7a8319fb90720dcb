r"""Burda, Grosse & Salakhutdinov (2016), Tables 1 and 2, measured with minivae.

    python examples/iwae_vs_vae.py --runs vae-1-1 iwae-1-50            # two cells of Table 1
    python examples/iwae_vs_vae.py --objectives vae iwae --k 1 5 50 --layers 1 2   # the whole grid
    python examples/iwae_vs_vae.py --runs vae-1-1 iwae-1-50 --table2   # plus Table 2's continuations
    python examples/iwae_vs_vae.py --runs iwae-1-50 --minutes 30       # a shortened schedule
    python examples/iwae_vs_vae.py --runs vae-1-1+iwae-50              # one Table 2 continuation
    python examples/iwae_vs_vae.py --runs iwae-2-50 --resume           # continue a stopped run
    python examples/iwae_vs_vae.py --runs iwae-1-50 --estimator dreg   # the run dreg-1-50

A run is named ``<objective>-<layers>-<k>``.  The protocol (paper, section 5 and appendix):
784-200-200-50 tanh (1 layer) or 100 + 50 units (2 layers), Bernoulli decoder, Glorot init,
output bias at the logit of the mean training pixel, Adam (0.9, 0.999, eps 1e-4), batch 20,
3^i passes at 1e-3 * 10^(-i/7) for i = 0..7 (3,280 passes), dynamic binarisation, and the test
log-likelihood L_5000 on the 10,000 test images binarised once.  "vae" trains the k-sample
Monte-Carlo ELBO (the paper's VAE: (1/k) sum grad log w_i); "iwae" the bound L_k.
``--passes`` or ``--minutes`` shortens the schedule, keeping its shape (or, with ``--schedule exp``,
decaying 1e-3 -> 1e-4 geometrically over the budget); the report says which, and the batch size.

``--estimator`` trains the iwae runs by one of the gradient estimators after IWAE
(minivae/objectives.py): stl or dreg (one stochastic layer only), miwae or piwae (``--m`` groups
of k samples), ciwae (``--ciwae-beta``); ``iwae``, the default, is the plain run.  Such a run is
named with the estimator in the objective's place, ``<estimator>-<layers>-<k>`` (iwae-1-50 with
dreg is ``dreg-1-50``), and its paper columns stay empty (Burda et al. had no such run); its m and
beta are settings like --batch-size, so runs that differ only there need different --out folders.
Runs that train something else (vae, Table 2) take no --estimator.

Table 2 (``--table2``, or one of its runs by name): the trained vae-1-1 continued with the IWAE
k=50 objective (``vae-1-1+iwae-50``), and the trained iwae-1-50 continued with the VAE objective,
k=50 (``iwae-1-50+vae-50``), each at lr 1e-4 for 3^7 passes (scaled like the rest); the two are
trained first unless OUT already holds their checkpoints.

A run saves OUT/<run>/checkpoint.npz (parameters, Adam state, history) after every pass, and
``--resume`` continues it with the configuration stored there, so a long run can be spread over
several sessions: the schedule is the original run's, and training time already spent counts
against the budget (``--passes`` or ``--minutes`` replace the budget, ``--schedule`` switches the
schedule from the next pass on).  The paper's last stage (lr 1e-4) starts a third of the way into
the budget, so a new ``--minutes`` M keeps a run in it if M is at most three times the training
time spent.  A checkpoint without Adam state (those in checkpoints/ hold parameters and history
only) resumes too, once copied to OUT/<run>/checkpoint.npz, with Adam's moments at zero.  Every
budget, switch of schedule and restart of Adam is this script's own record, kept in the checkpoint
under "campaign" and named in the report.  Writes results.json, results.md (minivae beside the
paper) and a checkpoint per run, each replaced whole or not at all.

What --resume takes from a run's checkpoint: the model, the objective, k and the estimator (which
the run's name must match: another --estimator names another run), --batch-size, --seed, --m,
--ciwae-beta and --subset (given with another value, they are refused), the
learning rates and the schedule, which --passes and --minutes (a new budget) and --schedule (a
switch from the next pass on) change.
Without --resume, a run whose checkpoint is in OUT already is refused before anything trains:
pass --resume to continue it, or --overwrite (or another --out) to train it again.  A damaged
OUT/results.json is refused before anything trains too.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

from minivae import VAE, get_backend
from minivae.checkpoint import CheckpointError, load_checkpoint, read_checkpoint
from minivae.commands import (CommandError, add_overwrite_argument, backend_and_data,
                              check_batch_size, check_resume_flags, fraction_01, markdown_table,
                              output_folder, parse_flags, positive_float, positive_int,
                              read_records, refuse_to_replace, resumed_config, run, run_parser,
                              save_every_epoch, score_log_likelihood, training_subset,
                              update_records, write_text)
from minivae.data import binarize_fixed
from minivae.evaluate import active_units_per_layer
from minivae.objectives import ESTIMATORS
from minivae.train import IWAE_PASSES, TrainConfig, train
from minivae.two_layer import TwoLayerVAE

# Table 1: (objective, layers, k) -> (test NLL in nats, active units "first+second")
PAPER_TABLE1 = {
    ("vae", 1, 1): (86.76, "19"), ("iwae", 1, 1): (86.76, "19"),
    ("vae", 1, 5): (86.47, "20"), ("iwae", 1, 5): (85.54, "22"),
    ("vae", 1, 50): (86.35, "20"), ("iwae", 1, 50): (84.78, "25"),
    ("vae", 2, 1): (85.33, "16+5"), ("iwae", 2, 1): (85.33, "16+5"),
    ("vae", 2, 5): (85.01, "17+5"), ("iwae", 2, 5): (83.89, "21+5"),
    ("vae", 2, 50): (84.78, "17+5"), ("iwae", 2, 50): (82.90, "26+7"),
}
# Table 2 (1 layer): continuation name -> (from run, objective, k, paper NLL, paper active units)
PAPER_TABLE2 = {
    "vae-1-1+iwae-50": ("vae-1-1", "iwae", 50, 84.88, "22"),
    "iwae-1-50+vae-50": ("iwae-1-50", "vae", 50, 86.02, "23"),
}
OBJECTIVE = {"vae": "mc_elbo", "iwae": "iwae"}
PROTOCOL = ("Glorot init; output bias = logit(mean training pixel); Adam beta1=0.9, beta2=0.999, "
            "eps=1e-4; batch 20; lr 1e-3*10^(-i/7) for 3^i passes, i=0..7; dynamic binarisation; "
            "test NLL = L_k on the test set binarised once (seed 0)")


def parse_args(argv=None):
    p = run_parser(__doc__, out="runs/iwae", epilog=__doc__.split("\n\n")[-1].replace("\n", " "))
    p.add_argument("--runs", nargs="+", type=parse_run, default=None,
                   help="e.g. vae-1-1 iwae-1-50 iwae-2-5")
    p.add_argument("--objectives", nargs="+", default=["vae", "iwae"], choices=["vae", "iwae"])
    p.add_argument("--k", type=int, nargs="+", default=[1, 5, 50], choices=[1, 5, 50])
    p.add_argument("--layers", type=int, nargs="+", default=[1, 2], choices=[1, 2])
    p.add_argument("--table2", action="store_true", help="also Table 2's continuations")
    p.add_argument("--estimator", default="iwae", choices=list(ESTIMATORS),
                   help="the iwae runs' gradient estimator (iwae: the plain run); a run "
                        "trained with another is named <estimator>-<layers>-<k>, e.g. dreg-1-50; "
                        "stl and dreg need one stochastic layer")
    p.add_argument("--m", type=positive_int, default=1,
                   help="miwae, piwae: groups of k samples")
    p.add_argument("--ciwae-beta", type=fraction_01, default=0.5,
                   help="ciwae: beta ELBO + (1 - beta) IWAE")
    p.add_argument("--passes", type=positive_int, default=None,
                   help=f"passes over the data (default {IWAE_PASSES}); the 3^i schedule is "
                        "scaled to fit")
    p.add_argument("--minutes", type=positive_float, default=None,
                   help="wall-clock budget per run")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue each run from OUT/<run>/checkpoint.npz where there is one, "
                            "with its stored configuration; --passes or --minutes, if given, "
                            "replace its budget, and --schedule switches its schedule from the "
                            "next pass on")
    add_overwrite_argument(again, "a run's checkpoint")
    p.add_argument("--schedule", default=None, choices=["iwae", "exp"],
                   help="iwae (the default): the paper's 3^i stages, scaled to the budget; exp: "
                        "1e-3 decaying geometrically to 1e-4 over the budget; with --resume, "
                        "switches a run's schedule from its next pass on")
    p.add_argument("--batch-size", type=positive_int, default=20)
    p.add_argument("--eval-k", type=positive_int, default=5000)
    p.add_argument("--eval-n", type=positive_int, default=None,
                   help="test images to evaluate (default all)")
    p.add_argument("--subset", type=positive_int, default=None,
                   help="training images (default all 60,000)")
    return parse_flags(p, argv)


def parse_run(name: str):
    """(objective, layers, k) of a Table 1 run's name, or a Table 2 continuation's name; an
    argparse type, so an unknown name is refused with the flags."""
    if name in PAPER_TABLE2:
        return name
    try:
        objective, layers, k = name.split("-")
        key = (objective, int(layers), int(k))
    except ValueError:
        key = None
    if key not in PAPER_TABLE1:
        raise argparse.ArgumentTypeError(
            f"unknown run {name!r}: use <vae|iwae>-<1|2>-<1|5|50>, e.g. iwae-1-50, or a Table 2 "
            f"continuation ({', '.join(PAPER_TABLE2)})")
    return key


def run_name(objective: str, layers: int, k: int, estimator: str | None = None) -> str:
    """``<objective>-<layers>-<k>``, or for an iwae run with an estimator, the estimator in the
    objective's place (dreg-1-50)."""
    return f"{estimator if objective == 'iwae' and estimator else objective}-{layers}-{k}"


def estimator_text(r: dict) -> str:
    """"dreg", "miwae (m=8)", "ciwae (beta=0.05)": the estimator of a result or a config dict and
    the setting it reads; "-" for a run trained on the k-sample ELBO (vae)."""
    estimator = r.get("estimator") or ("iwae" if r["objective"] == "iwae" else "-")
    return estimator + (f" (m={r['m']})" if estimator in ("miwae", "piwae") else
                        f" (beta={r['ciwae_beta']:g})" if estimator == "ciwae" else "")


def check_estimator(args, estimator, keys, table2) -> None:
    """Refuse, before anything trains, an estimator that a run cannot take, and an --m or
    --ciwae-beta that the estimator would not read."""
    if estimator:
        other = [run_name(*key) for key in keys if key[0] != "iwae"] + table2
        if other:
            raise CommandError(f"--estimator {estimator} is for the iwae runs, not "
                               f"{', '.join(other)}: run those without it.")
        two = [run_name(*key) for key in keys if key[1] == 2]
        if ESTIMATORS[estimator].path_only and two:
            raise CommandError(f"--estimator {estimator} needs one stochastic layer (minivae's "
                               f"two-layer model does not drop the score term), not "
                               f"{', '.join(two)}: pass --layers 1 or another --estimator.")
    for flag, dest, used in (("--m", "m", ("miwae", "piwae")), ("--ciwae-beta", "ciwae_beta",
                                                                ("ciwae",))):
        if dest in args.given and estimator not in used:
            raise CommandError(f"{flag} is read only by --estimator {' or '.join(used)}: pass "
                               f"that estimator, or drop {flag}.")


def make_model(layers: int, backend, seed: int):
    if layers == 1:
        return VAE(784, 50, (200, 200), (200, 200), "tanh", "bernoulli", seed=seed, backend=backend)
    return TwoLayerVAE(784, 100, 50, (200, 200), (100, 100), "tanh", "bernoulli", seed=seed,
                       backend=backend)


def hardware() -> dict:
    return {"machine": platform.machine(), "processor": platform.processor() or "unknown",
            "cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__}


# ---------------------------------------------------------------- a run, and its record

def resume(name, path, fresh, cfg, args):
    """Continue the run saved at ``path``: (model, optimizer, cfg, start, history, record).

    The checkpoint must hold the model and the objective of run ``name`` (those of ``fresh`` and
    ``cfg``), and no flag given may contradict it (:func:`check_resume_settings`); it is loaded
    on a backend with its own seed, so a resumed run draws what an uninterrupted one would.
    ``record`` is the run's "campaign" (checkpoints/*.npz keep it as their config's "extra"): the
    passes where Adam restarted, and every budget and schedule with the pass it began at.
    """
    saved = check_resume_settings(name, path, fresh, cfg, args)
    backend = fresh.backend
    if saved.get("seed", backend.seed) != backend.seed:
        backend = get_backend(backend.name, saved["seed"])
    model, optimizer, state = load_checkpoint(path, backend)
    record = {**saved.get("extra", {}), **state.get("campaign", {})}
    cfg = resumed_config(path, state, **({"epochs": args.passes} if args.passes else {}),
                         **({"minutes": args.minutes} if args.minutes else {}))
    start, history = state["epoch"], state["history"]
    print(f"== {name}: resuming after pass {start} "
          f"({sum(r['seconds'] for r in history) / 60:.1f} minutes of training so far)")
    if optimizer is None:                 # e.g. a parameters-only checkpoint from checkpoints/
        record["adam_restarts"] = record.get("adam_restarts", []) + [start]
        print(f"== {name}: the checkpoint holds no Adam state: Adam starts afresh (zero "
              f"moments) from pass {start + 1}, and the report says so")
    if args.minutes and args.minutes != saved.get("minutes"):          # keep every budget
        budgets = record.get("budgets", [[0, saved.get("minutes")]])
        record["budgets"] = budgets + [[start, args.minutes]]
        print(f"== {name}: {args.minutes:g}-minute budget from pass {start + 1} on")
    if args.schedule and args.schedule != cfg.schedule:                # and every switch
        switches = record.get("schedules", [[0, cfg.schedule]])
        record["schedules"], cfg.schedule = switches + [[start, args.schedule]], args.schedule
        print(f"== {name}: schedule {args.schedule} from pass {start + 1} on")
    return model, optimizer, cfg, start, history, record


def check_resume_settings(name, path, fresh, cfg, args) -> dict:
    """The training configuration saved at ``path``, once it is known to be run ``name``'s: the
    model type, objective, k and estimator of ``fresh`` and ``cfg``, and a --batch-size, --seed,
    --m, --ciwae-beta or --subset that agrees (given, or for --subset, this invocation's data)."""
    meta, _ = read_checkpoint(path)
    model, train = meta.get("model") or {}, meta.get("train") or {}
    saved = train.get("config") if isinstance(train.get("config"), dict) else {}
    held = (model.get("type", "VAE"), saved.get("objective"), saved.get("k"),
            saved.get("estimator") or "iwae")                    # None, "iwae": the plain run
    if held != (type(fresh).__name__, cfg.objective, cfg.k, cfg.estimator or "iwae"):
        raise CheckpointError(f"{path} holds a {held[0]} trained with {describe(saved)}, but run "
                              f"{name} is a {type(fresh).__name__} trained with "
                              f"{describe(asdict(cfg))}: move the file away, or pass another "
                              f"--out.")
    check_resume_flags(args, {dest: saved[dest] for dest in ("batch_size", "seed", "m",
                                                             "ciwae_beta") if dest in saved}, path)
    if "subset" in train and train["subset"] != args.subset:
        raise CommandError(f"{path} was trained on --subset {train['subset']}, this invocation on "
                           f"--subset {args.subset}: pass --subset {train['subset']} to resume it.")
    return saved


def run_one(name, model, cfg, ds, x_eval, args, paper=None) -> dict:
    """Train ``model`` (or, with ``--resume``, the run saved in OUT/name), evaluate, report."""
    path = Path(args.out) / name / "checkpoint.npz"
    optimizer, start, history, record = None, 0, [], {}
    if args.resume and path.exists():
        model, optimizer, cfg, start, history, record = resume(name, path, model, cfg, args)
    print(f"== {name}: {describe(asdict(cfg))}, {model.n_params:,} parameters, "
          f"{cfg.epochs} passes max" + (f", {cfg.minutes:g} minutes" if cfg.minutes else ""))
    history = train(model, ds.x_train, ds.x_test[: args.eval_n], cfg, optimizer, start, history,
                    on_epoch_end=save_every_epoch(path, model, cfg, campaign=record,
                                                 subset=args.subset))
    wall = sum(r["seconds"] for r in history)                # training time, over every session
    result = {"run": name, "objective": cfg.objective, "k": cfg.k,
              "estimator": cfg.estimator or ("iwae" if cfg.objective == "iwae" else None),
              **({"m": cfg.m} if cfg.estimator in ("miwae", "piwae") else {}),
              **({"ciwae_beta": cfg.ciwae_beta} if cfg.estimator == "ciwae" else {}),
              "passes": len(history),
              "schedule": schedule_text(cfg, record), "batch_size": cfg.batch_size,
              "train_seconds": wall, "seconds_per_pass": wall / max(len(history), 1),
              "final_test_nelbo_k1": history[-1]["test_nelbo"] if history else None,
              **score_log_likelihood(model, x_eval, args.eval_k),
              "active_units": "+".join(map(str, active_units_per_layer(model, x_eval))),
              "paper": paper}
    print(f"   {name}: NLL {result['test_nll']:.2f} ± {result['test_nll_se']:.2f} nats "
          f"(paper {paper[0] if paper else '-'}), active {result['active_units']}, "
          f"{len(history)} passes in {wall / 60:.1f} min")
    return result


def describe(cfg: dict) -> str:
    """e.g. "iwae k=50", "iwae k=50, dreg gradient", "iwae k=5, miwae (m=8) gradient"."""
    return f"{cfg.get('objective')} k={cfg.get('k')}" + (
        f", {estimator_text(cfg)} gradient" if cfg.get("estimator") not in (None, "iwae") else "")


def schedule_text(cfg, record=None) -> str:
    """e.g. "iwae over 3280 passes", "exp for passes 1-86, then iwae over ..., 1200-minute budget",
    "..., 1200-minute budget, then 1800-minute budget from pass 1010" (lengthened on resume),
    "..., Adam restarted at pass 1162" (resumed from a checkpoint without Adam state)."""
    record = record or {}
    switches = record.get("schedules", [])
    earlier = [f"{name} for " + (f"passes {a + 1}-{b}" if b > a + 1 else f"pass {b}")
               for (a, name), (b, _) in zip(switches, switches[1:])]
    budget = ", then ".join(f"{m:g}-minute budget" + (f" from pass {a + 1}" if a else "")
                            for a, m in record.get("budgets", [[0, cfg.minutes]]) if m)
    restarts = "".join(f", Adam restarted at pass {a + 1}" for a in record.get("adam_restarts", []))
    return ", then ".join(earlier + [f"{cfg.schedule} over {cfg.epochs} passes"]) + (
        f", {budget}" if budget else "") + restarts


def markdown(results, backend_name) -> str:
    head = ["run", "objective", "layers", "k", "passes (schedule)", "batch", "gradient estimator",
            "minivae NLL (nats)", "paper NLL", "minivae active", "paper active", "train wall clock"]
    rows = [[r["run"], r["objective"], r["run"].split("-")[1], r["k"],
             f"{r['passes']} ({r['schedule']})", r.get("batch_size", 20),
             estimator_text(r), f"{r['test_nll']:.2f} ± {r['test_nll_se']:.2f} (L_{r['eval_k']}, "
             f"{r['eval_images']} images)", paper[0], r["active_units"], paper[1],
             f"{r['train_seconds'] / 60:.1f} min"]
            for r in results for paper in [r["paper"] or ("-", "-")]]
    return "\n".join(["# minivae vs Burda et al. (2016)", "", f"Protocol: {PROTOCOL}.", "",
                      f"Hardware: {hardware()}; backend {backend_name}.", "",
                      *markdown_table(head, rows)]) + "\n"


# ---------------------------------------------------------------- main

def main(argv=None) -> int:
    args = parse_args(argv)
    out = output_folder(args.out)
    read_records(out / "results.json", "run")      # a damaged results file stops us before training
    keys = (list(dict.fromkeys(args.runs)) if args.runs is not None else
            [(o, layers, k) for layers in args.layers for o in args.objectives for k in args.k])
    table2 = list(PAPER_TABLE2) if args.table2 else [key for key in keys if key in PAPER_TABLE2]
    keys = [key for key in keys if key not in PAPER_TABLE2]
    estimator = None if args.estimator == "iwae" else args.estimator    # iwae: the plain run
    check_estimator(args, estimator, keys, table2)
    for cont in table2:                 # a continuation starts from a trained vae-1-1 or iwae-1-50
        source = PAPER_TABLE2[cont][0]
        if parse_run(source) not in keys and not (out / source / "checkpoint.npz").exists():
            keys.append(parse_run(source))
    if not args.resume:                 # refuse before anything trains, not after hours
        for name in [run_name(*key, estimator) for key in keys] + table2:
            refuse_to_replace(out / name / "checkpoint.npz", args)
    be, ds = backend_and_data(args, "mnist")
    ds = training_subset(ds, args.subset)
    check_batch_size(args.batch_size, ds.x_train.shape[0], "training images" + (
        f" (--subset {args.subset})" if args.subset else ""))
    if args.eval_n is not None and args.eval_n > ds.x_test.shape[0]:
        raise CommandError(f"--eval-n {args.eval_n} is more than the {ds.x_test.shape[0]} test "
                           f"images: pass at most {ds.x_test.shape[0]}, or leave --eval-n out.")
    x_eval = binarize_fixed(ds.x_test[: args.eval_n], 0)
    passes = args.passes or IWAE_PASSES
    base = dict(epochs=passes, batch_size=args.batch_size, lr=1e-3,
                schedule=args.schedule or "iwae", lr_end=1e-4, adam_eps=1e-4, seed=args.seed,
                minutes=args.minutes)
    results = []
    for objective, layers, k in keys:
        model = make_model(layers, be, args.seed)
        model.init_output_bias(ds.x_train.mean(axis=0))
        gradient = dict(estimator=estimator, m=args.m, ciwae_beta=args.ciwae_beta)
        cfg = TrainConfig(objective=OBJECTIVE[objective], k=k, **base,
                          **(gradient if objective == "iwae" else {}))
        paper = None if estimator else PAPER_TABLE1[(objective, layers, k)]   # Burda had none
        results.append(run_one(run_name(objective, layers, k, estimator), model, cfg, ds, x_eval,
                               args, paper=paper))
    for name in table2:
        source, objective, k, nll, active = PAPER_TABLE2[name]
        try:
            model, _, _ = load_checkpoint(out / source / "checkpoint.npz", be, with_optimizer=False)
        except CheckpointError as err:
            print(f"error: Table 2 starts from {source}'s checkpoint: {err}", file=sys.stderr)
            return 2
        cfg = TrainConfig(objective=OBJECTIVE[objective], k=k, **{
            **base, "epochs": max(1, round(passes * 3 ** 7 / IWAE_PASSES)), "lr": 1e-4,
            "schedule": "constant"})
        results.append(run_one(name, model, cfg, ds, x_eval, args, paper=(nll, active)))

    all_results = update_records(out / "results.json", [
        {**r, "backend": be.name, "hardware": hardware(), "protocol": PROTOCOL} for r in results],
        key="run")
    write_text(out / "results.md", markdown(all_results, be.name))
    print(markdown(all_results, be.name))
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
