r"""Where the time goes: a k = 50 training step or an L_5000 image, by library function.

    python benchmarks/breakdown.py                        # b20, b128 and c, one thread and shares
    python benchmarks/breakdown.py --only c --reps 20     # one workload, more repetitions

For each workload (the Burda model of ``benchmarks/workloads.py``: an IWAE k = 50 step at batch 20
or 128 with binarisation, noise and Adam as in ``benchmarks/runners.py``, or L_5000 of one test
image as ``minivae.evaluate.log_likelihood`` computes it) and each configuration, a fresh process
wraps the library's functions in timers and runs the workload ``--reps`` times after a few
untimed ones:

    1 thread   MINIVAE_NUM_THREADS=1: minivae's own work on the calling thread, the BLAS on its
               default threads (every core): what minivae did before it cut batches into shares
    shares     the default: the batch (or L_k's samples) in one share per core, each share on one
               BLAS thread (:mod:`minivae.parallel`)

and prints, per step or image, the wall time and the thread time spent in each function:
``Dense`` (the matrix products with their bias add and bias gradient), ``Tanh``, the Bernoulli
likelihood, the Gaussian latent terms, the objective's log-mean-exp, Adam, the draws (the
binarisation and eps; L_k draws the next image's eps ahead, beside the shares), and the time
inside the shares' region.  Thread times add over the shares, so with two shares they can sum to
about twice the wall time.  Writes ``results/breakdown.{json,md}`` with ``--out``.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
WORKLOADS = {"b20": (20, 50), "b128": (128, 50), "c": (1, 5000)}
CONFIGS = {"1 thread": {"MINIVAE_NUM_THREADS": "1"}, "shares": {}}
PARTS = ["Dense", "Tanh", "Bernoulli", "latent", "log-mean-exp", "Adam", "draws", "shares"]


def child(workload: str, reps: int, data_dir: str | None) -> dict:
    """Run ``workload`` ``reps`` times with timers around the library's functions."""
    sys.path.insert(0, str(REPO))
    from minivae import evaluate, gaussian, layers, likelihoods, objectives, parallel
    from minivae.backend import get_backend, reuse_freed_memory
    from minivae.data import binarize, load_dataset
    from minivae.evaluate import log_likelihood
    from minivae.optim import Adam
    from benchmarks.runners import make_minivae_model

    spent = collections.defaultdict(float)

    def timed(owner, name, part):
        fn = getattr(owner, name)

        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[part] += time.perf_counter() - t0
        setattr(owner, name, wrapper)

    for name in ("forward", "backward"):
        timed(layers.Dense, name, "Dense")
        timed(layers.Tanh, name, "Tanh")
        timed(likelihoods.Bernoulli, name, "Bernoulli")
    for name in ("reparameterize_forward", "reparameterize_backward",
                 "std_normal_log_ratio_forward", "std_normal_log_ratio_backward"):
        timed(gaussian, name, "latent")
    timed(objectives, "log_mean_exp", "log-mean-exp")
    evaluate.log_mean_exp = objectives.log_mean_exp            # its own binding of the name
    timed(Adam, "step", "Adam")
    timed(parallel, "over_shares", "shares")

    reuse_freed_memory()
    be = get_backend("numpy", 0)
    vae = make_minivae_model("burda", be)
    timed(vae, "draw_eps", "draws")
    ds = load_dataset("mnist", data_dir, offline=True)
    B, K = WORKLOADS[workload]
    if workload == "c":
        x = binarize(ds.x_test[:reps + 3].astype(np.float32), np.random.default_rng(0))

        def run(i):
            log_likelihood(vae, x[i:i + 1], K, rng=be.generator("log_likelihood"))
    else:
        X = ds.x_train.astype(np.float32)
        rng, opt = be.generator("train"), Adam(lr=1e-3, eps=1e-4)

        def run(i):
            t0 = time.perf_counter()
            xb = binarize(X[i * B:(i + 1) * B], rng)
            spent["draws"] += time.perf_counter() - t0
            _, grads, _ = vae.loss_and_grads(xb, "iwae", K, rng=rng, check_data=False)
            opt.step(vae.params, grads)
    for i in range(3):
        run(i)
    spent.clear()
    walls = []
    for i in range(3, 3 + reps):
        t0 = time.perf_counter()
        run(i)
        walls.append(time.perf_counter() - t0)
    return {"wall_ms": 1e3 * float(np.median(walls)), "threads": parallel.threads(),
            "parts_ms": {p: 1e3 * spent[p] / reps for p in PARTS}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="b20,b128,c")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--data-dir", default=os.environ.get("MINIVAE_DATA"))
    ap.add_argument("--out", default=None, help="a folder for breakdown.json and breakdown.md")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(child(args.child, args.reps, args.data_dir)))
        return 0
    rows = []
    for w in args.only.split(","):
        for name, env in CONFIGS.items():
            out = subprocess.run([sys.executable, __file__, "--child", w, "--reps", str(args.reps)]
                                 + (["--data-dir", args.data_dir] if args.data_dir else []),
                                 env={**os.environ, **env}, capture_output=True, text=True,
                                 check=True, cwd=REPO)
            res = json.loads(out.stdout.split("RESULT ", 1)[1])
            rows.append({"workload": w, "config": name, **res})
            print(f"{w:5s} {name:9s} wall {res['wall_ms']:7.2f} ms  " + "  ".join(
                f"{p} {v:.2f}" for p, v in res["parts_ms"].items()), flush=True)
    if args.out:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                capture_output=True, text=True).stdout.strip()
        head = (f"# Where the time goes (`python benchmarks/breakdown.py --reps {args.reps}`, minivae "
                f"{commit}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores)\n\n"
                "ms per k = 50 step (b20, b128) or per L_5000 image (c), medians of the wall time; "
                "the parts are thread times summed over the shares (see the script's docstring).\n\n"
                "| workload | config | wall | " + " | ".join(PARTS) + " |\n|---|---|---|"
                + "---|" * len(PARTS) + "\n")
        body = "".join(f"| {r['workload']} | {r['config']} | {r['wall_ms']:.1f} | " + " | ".join(
            f"{r['parts_ms'][p]:.2f}" for p in PARTS) + " |\n" for r in rows)
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "breakdown.md").write_text(head + body)
        (Path(args.out) / "breakdown.json").write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
