r"""The Table 1 campaign's bookkeeping for examples/iwae_vs_vae.py: run names, the estimator rules,
and resuming a run across sessions with its restarts, budgets and schedule switches recorded.

A run is named <objective>-<layers>-<k> (vae-1-1, iwae-2-50), or for an iwae run trained with an
estimator, <estimator>-<layers>-<k> (dreg-1-50).  A resumed run's "campaign" record keeps the
passes where Adam restarted (a checkpoint without Adam state, as in checkpoints/) and every budget
and schedule from the pass it began; the report names them (:func:`schedule_text`).  The paper's
numbers and protocol are data, in iwae_runs.json beside this file.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from minivae import get_backend
from minivae.checkpoint import CheckpointError
from minivae.commands import check_resume_flags
from minivae.objectives import ESTIMATORS
from minivae.runs import (CommandError, describe_training, estimator_text, machine, markdown_table,
                          read_saved_run, resume_run)

PAPER = json.loads(Path(__file__).with_name("iwae_runs.json").read_text())
TABLE1, TABLE2, PROTOCOL = PAPER["table1"], PAPER["table2"], PAPER["protocol"]
RESUME_HELP = " ".join("""
--resume continues each run from OUT/<run>/checkpoint.npz with the model, objective, k, estimator,
--batch-size, --seed, --m, --ciwae-beta and --subset it holds (another value is refused) and its
schedule, counting the training time spent against the budget: --passes or --minutes set a new
budget, --schedule switches the schedule from the next pass on, and a checkpoint without Adam
state (as in checkpoints/) starts Adam afresh; the checkpoint records each of these ("campaign")
and the report names them.  Without --resume, a saved run is refused before anything trains (pass
--overwrite to train it again), and so is a damaged OUT/results.json.""".split())


def parse_run(name: str) -> str:
    """A run of Table 1 or a Table 2 continuation, by name: an argparse type."""
    if name not in TABLE1 and name not in TABLE2:
        raise argparse.ArgumentTypeError(
            f"unknown run {name!r}: use <vae|iwae>-<1|2>-<1|5|50>, e.g. iwae-1-50, or a Table 2 "
            f"continuation ({', '.join(TABLE2)})")
    return name


def run_name(name: str, estimator: str | None) -> str:
    """An iwae run trained with an estimator is named for it: iwae-1-50 with dreg is dreg-1-50."""
    return name.replace("iwae", estimator, 1) if estimator and name.startswith("iwae-") else name


def check_estimator(args, estimator, names, table2) -> None:
    """Refuse, before anything trains, an estimator a run cannot take and a setting it won't read."""
    if estimator:
        other = [n for n in names if n.startswith("vae")] + table2
        if other:
            raise CommandError(f"--estimator {estimator} is for the iwae runs, not "
                               f"{', '.join(other)}: run those without it.")
        two = [n for n in names if n.split("-")[1] == "2"]
        if ESTIMATORS[estimator].path_only and two:
            raise CommandError(f"--estimator {estimator} needs one stochastic layer (minivae's "
                               f"two-layer model does not drop the score term), not "
                               f"{', '.join(two)}: pass --layers 1 or another --estimator.")
    for flag, dest, used in (("--m", "m", ("miwae", "piwae")), ("--ciwae-beta", "ciwae_beta",
                                                                ("ciwae",))):
        if dest in args.given and estimator not in used:
            raise CommandError(f"{flag} is read only by --estimator {' or '.join(used)}: pass "
                               f"that estimator, or drop {flag}.")


def resume(name, path, fresh, cfg, args):
    """Continue the run saved at ``path``, which must hold run ``name``'s model and objective (of
    ``fresh`` and ``cfg``) and agree with the flags given: (model, optimizer, cfg, start, history,
    record).  ``record`` is the run's "campaign" (checkpoints/*.npz keep it as their config's
    "extra"): the passes where Adam restarted, and every budget and schedule from the pass it began.
    """
    model_meta, train_dict, saved = read_saved_run(path)
    held = (model_meta.get("type", "VAE"), saved.get("objective"), saved.get("k"),
            saved.get("estimator") or "iwae")                    # None, "iwae": the plain run
    if held != (type(fresh).__name__, cfg.objective, cfg.k, cfg.estimator or "iwae"):
        raise CheckpointError(f"{path} holds a {held[0]} trained with {describe_training(saved)}, "
                              f"but run {name} is a {type(fresh).__name__} trained with "
                              f"{describe_training(asdict(cfg))}: move the file away, or pass "
                              "another --out.")
    check_resume_flags(args, {d: saved[d] for d in ("batch_size", "seed", "m", "ciwae_beta")
                              if d in saved}, path)
    if "subset" in train_dict and train_dict["subset"] != args.subset:
        raise CommandError(f"{path} was trained on --subset {train_dict['subset']}, this invocation "
                           f"on --subset {args.subset}: pass --subset {train_dict['subset']} to "
                           "resume it.")
    backend = fresh.backend             # with the checkpoint's seed: the draws of one long run
    if saved.get("seed", backend.seed) != backend.seed:
        backend = get_backend(backend.name, saved["seed"])
    budget = {k: v for k, v in (("epochs", args.passes), ("minutes", args.minutes)) if v}
    model, optimizer, cfg, start, history, state = resume_run(path, backend, **budget)
    record = {**saved.get("extra", {}), **state.get("campaign", {})}
    print(f"== {name}: resuming after pass {start} "
          f"({sum(r['seconds'] for r in history) / 60:.1f} minutes of training so far)")

    def note(key, first, entry, text):            # keep every restart, budget and schedule
        record[key] = record.get(key, first) + [entry]
        print(f"== {name}: {text}")
    if optimizer is None:                 # e.g. a parameters-only checkpoint from checkpoints/
        note("adam_restarts", [], start, f"the checkpoint holds no Adam state: Adam starts afresh "
             f"(zero moments) from pass {start + 1}, and the report says so")
    if args.minutes and args.minutes != saved.get("minutes"):
        note("budgets", [[0, saved.get("minutes")]], [start, args.minutes],
             f"{args.minutes:g}-minute budget from pass {start + 1} on")
    if args.schedule and args.schedule != cfg.schedule:
        note("schedules", [[0, cfg.schedule]], [start, args.schedule],
             f"schedule {args.schedule} from pass {start + 1} on")
        cfg.schedule = args.schedule
    return model, optimizer, cfg, start, history, record


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


# ---------------------------------------------------------------- the report

def markdown(results, backend_name) -> str:
    head = ["run", "objective", "layers", "k", "passes (schedule)", "batch", "gradient estimator",
            "minivae NLL (nats)", "paper NLL", "minivae active", "paper active", "train wall clock"]
    rows = [[r["run"], r["objective"], r["run"].split("-")[1], r["k"],
             f"{r['passes']} ({r['schedule']})", r.get("batch_size", 20), estimator_text(r),
             f"{r['test_nll']:.2f} ± {r['test_nll_se']:.2f} (L_{r['eval_k']}, {r['eval_images']} "
             f"images)", paper[0], r["active_units"], paper[1], f"{r['train_seconds'] / 60:.1f} min"]
            for r in results for paper in [r["paper"] or ("-", "-")]]
    return "\n".join(["# minivae vs Burda et al. (2016)", "", f"Protocol: {PROTOCOL}.", "",
                      f"Hardware: {machine()}; backend {backend_name}.", "",
                      *markdown_table(head, rows)]) + "\n"
