r"""Burda, Grosse & Salakhutdinov (2016), Tables 1 and 2, measured with minivae.

    python examples/iwae_vs_vae.py --runs vae-1-1 iwae-1-50            # two cells of Table 1
    python examples/iwae_vs_vae.py --objectives vae iwae --k 1 5 50 --layers 1 2   # the whole grid
    python examples/iwae_vs_vae.py --runs vae-1-1 iwae-1-50 --table2   # plus Table 2's continuations
    python examples/iwae_vs_vae.py --runs iwae-1-50 --minutes 30       # a shortened schedule
    python examples/iwae_vs_vae.py --runs iwae-2-50 --resume           # continue a stopped run
    python examples/iwae_vs_vae.py --runs iwae-1-50 --estimator dreg   # the run dreg-1-50

A run is named <objective>-<layers>-<k>: "vae" trains the k-sample ELBO, "iwae" the bound L_k,
with the paper's models, its Adam, batch 20 and its 3,280 passes in 3^i stages at lr
1e-3 * 10^(-i/7); --passes or --minutes scales the stages to a shorter budget (--schedule exp:
1e-3 -> 1e-4 geometrically instead).  An iwae run trained with --estimator is named for it
(dreg-1-50), with no paper numbers.  Table 2: vae-1-1 continued with IWAE, k=50, and iwae-1-50
with the VAE objective, k=50, at lr 1e-4 for 3^7 passes (scaled), from OUT's checkpoints (trained
first if missing).  The paper's numbers and protocol are in iwae_runs.json, the campaign's
bookkeeping (names, resuming, the report) in iwae_campaign.py, both beside this file;
docs/iwae_results.md is the experiment record.  Writes results.json, results.md (minivae beside
the paper) and, after every pass, OUT/<run>/checkpoint.npz.

--resume continues each run from OUT/<run>/checkpoint.npz (the rules: --help, iwae_campaign.py).
"""
from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

from minivae import VAE, TwoLayerVAE
from minivae.checkpoint import CheckpointError, load_checkpoint
from minivae.commands import (add_estimator_arguments, add_resume_arguments, parse_flags,
                              positive_float, positive_int, run, run_parser)
from minivae.data import binarize_fixed
from minivae.evaluate import active_units_per_layer
from minivae.runs import (backend_and_data, check_batch_size, check_count, describe_training,
                          machine, output_folder, read_records, refuse_to_replace,
                          save_every_epoch, score_log_likelihood, update_records, write_text)
from minivae.train import IWAE_PASSES, TrainConfig, train

sys.path.insert(0, str(Path(__file__).resolve().parent))   # the campaign's bookkeeping, beside us
from iwae_campaign import (PAPER, PROTOCOL, RESUME_HELP, TABLE1, TABLE2, check_estimator,  # noqa: E402
                           markdown, parse_run, resume, run_name, schedule_text)

OBJECTIVE, MODEL = PAPER["objectives"], {"1": VAE, "2": TwoLayerVAE}     # by the run's name


def parse_args(argv=None):
    p = run_parser(__doc__, out="runs/iwae", epilog=RESUME_HELP)
    p.add_argument("--runs", nargs="+", type=parse_run, help="e.g. vae-1-1 iwae-1-50 iwae-2-5")
    p.add_argument("--objectives", nargs="+", default=["vae", "iwae"], choices=["vae", "iwae"])
    p.add_argument("--k", type=int, nargs="+", default=[1, 5, 50], choices=[1, 5, 50])
    p.add_argument("--layers", type=int, nargs="+", default=[1, 2], choices=[1, 2])
    p.add_argument("--table2", action="store_true", help="also Table 2's continuations")
    add_estimator_arguments(p, "iwae", "the iwae runs' gradient estimator (iwae: the plain run); "
                            "stl and dreg need one stochastic layer")
    p.add_argument("--passes", type=positive_int, help=f"default {IWAE_PASSES}; the schedule scales")
    p.add_argument("--minutes", type=positive_float, help="wall-clock budget per run")
    add_resume_arguments(p, "continue each run from OUT/<run>/checkpoint.npz (see below)",
                         "a run's checkpoint")
    p.add_argument("--schedule", choices=["iwae", "exp"], help="iwae (default): the paper's 3^i "
                   "stages, scaled to the budget; exp: 1e-3 -> 1e-4 geometrically")
    p.add_argument("--batch-size", type=positive_int, default=20)
    p.add_argument("--eval-k", type=positive_int, default=5000)
    p.add_argument("--eval-n", type=positive_int, help="test images to evaluate (default all)")
    p.add_argument("--subset", type=positive_int, help="training images (default all 60,000)")
    return parse_flags(p, argv)


# ---------------------------------------------------------------- a run, and the report

def run_one(name, model, cfg, ds, x_eval, args, paper=None) -> dict:
    """Train ``model`` (or, with ``--resume``, the run saved in OUT/name), evaluate, report."""
    path = Path(args.out) / name / "checkpoint.npz"
    optimizer, start, history, record = None, 0, [], {}
    if args.resume and path.exists():
        model, optimizer, cfg, start, history, record = resume(name, path, model, cfg, args)
    print(f"== {name}: {describe_training(asdict(cfg))}, {model.n_params:,} parameters, "
          f"{cfg.epochs} passes max" + (f", {cfg.minutes:g} minutes" if cfg.minutes else ""))
    history = train(model, ds.x_train, ds.x_test[: args.eval_n], cfg, optimizer, start, history,
                    on_epoch_end=save_every_epoch(path, model, cfg, campaign=record,
                                                 subset=args.subset))
    wall = sum(r["seconds"] for r in history)                # training time, over every session
    result = {"run": name, "objective": cfg.objective, "k": cfg.k,
              "estimator": cfg.estimator or ("iwae" if cfg.objective == "iwae" else None),
              **({"m": cfg.m} if cfg.estimator in ("miwae", "piwae") else {}),
              **({"ciwae_beta": cfg.ciwae_beta} if cfg.estimator == "ciwae" else {}),
              "passes": len(history), "schedule": schedule_text(cfg, record),
              "batch_size": cfg.batch_size, "train_seconds": wall,
              "seconds_per_pass": wall / max(len(history), 1),
              "final_test_nelbo_k1": history[-1]["test_nelbo"] if history else None,
              **score_log_likelihood(model, x_eval, args.eval_k),
              "active_units": "+".join(map(str, active_units_per_layer(model, x_eval))),
              "paper": paper}
    print(f"   {name}: NLL {result['test_nll']:.2f} ± {result['test_nll_se']:.2f} nats "
          f"(paper {paper[0] if paper else '-'}), active {result['active_units']}, "
          f"{len(history)} passes in {wall / 60:.1f} min")
    return result


def main(argv=None) -> int:
    args = parse_args(argv)
    out = output_folder(args.out)
    read_records(out / "results.json", "run")      # a damaged results file stops us before training
    names = list(dict.fromkeys(args.runs or [f"{o}-{layers}-{k}" for layers in args.layers
                                             for o in args.objectives for k in args.k]))
    table2 = list(TABLE2) if args.table2 else [n for n in names if n in TABLE2]
    names = [n for n in names if n not in TABLE2]
    estimator = None if args.estimator == "iwae" else args.estimator    # iwae: the plain run
    check_estimator(args, estimator, names, table2)
    for source in [TABLE2[c]["from"] for c in table2]:      # a continuation's start: trained first
        if source not in names and not (out / source / "checkpoint.npz").exists():
            names.append(source)
    if not args.resume:                 # refuse before anything trains, not after hours
        for name in [run_name(n, estimator) for n in names] + table2:
            refuse_to_replace(out / name / "checkpoint.npz", args)
    be, ds = backend_and_data(args, "mnist", args.subset)
    check_batch_size(args.batch_size, ds.x_train.shape[0], "training images" + (
        f" (--subset {args.subset})" if args.subset else ""))
    check_count(args.eval_n, ds.x_test.shape[0], "--eval-n", "test images")
    x_eval = binarize_fixed(ds.x_test[: args.eval_n], 0)
    passes = args.passes or IWAE_PASSES
    base = dict(epochs=passes, batch_size=args.batch_size, lr=1e-3, schedule=args.schedule or "iwae",
                lr_end=1e-4, adam_eps=1e-4, seed=args.seed, minutes=args.minutes)
    results = []
    for name in names:
        objective, layers, k = name.split("-")
        model = MODEL[layers](**PAPER["models"][layers], seed=args.seed, backend=be)
        model.init_output_bias(ds.x_train.mean(axis=0))
        gradient = dict(estimator=estimator, m=args.m, ciwae_beta=args.ciwae_beta)
        cfg = TrainConfig(objective=OBJECTIVE[objective], k=int(k), **base,
                          **(gradient if objective == "iwae" else {}))
        results.append(run_one(run_name(name, estimator), model, cfg, ds, x_eval, args,
                               paper=None if estimator else TABLE1[name]))   # Burda had none
    for name in table2:
        cont = TABLE2[name]
        try:
            model, _, _ = load_checkpoint(out / cont["from"] / "checkpoint.npz", be,
                                          with_optimizer=False)
        except CheckpointError as err:
            print(f"error: Table 2 starts from {cont['from']}'s checkpoint: {err}", file=sys.stderr)
            return 2
        cfg = TrainConfig(objective=OBJECTIVE[cont["objective"]], k=cont["k"], **{
            **base, "epochs": max(1, round(passes * 3 ** 7 / IWAE_PASSES)), "lr": 1e-4,
            "schedule": "constant"})
        results.append(run_one(name, model, cfg, ds, x_eval, args, paper=cont["paper"]))

    all_results = update_records(out / "results.json", [
        {**r, "backend": be.name, "hardware": machine(), "protocol": PROTOCOL} for r in results],
        key="run")
    write_text(out / "results.md", markdown(all_results, be.name))
    print(markdown(all_results, be.name))
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
