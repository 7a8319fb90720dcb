r"""minivae against PyTorch, every workload, one command:

    python benchmarks/run.py [--device cpu|gpu] [--quick] [--repeats N] [--out benchmarks/results]

Measures the machine's float32 matrix-product throughput, then runs each workload of
``benchmarks/workloads.py`` for minivae and PyTorch alternately (minivae, torch, minivae, torch,
...), ``--repeats`` times, each run in a fresh process (``benchmarks/measure.py``) so its peak
memory is its own.  Reports per workload the median time of each library, the ratio
minivae / PyTorch (median over repeats of the two runs made back to back), the matrix-product
FLOPs, the bound FLOPs / measured throughput and the fraction of it each library reaches, and
the peak memory; writes ``results.json`` and ``results.md`` to ``--out``.  See README.md here.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.report import markdown, results_dir  # noqa: E402
from benchmarks.workloads import (BY_ID, N_TEST, WORKLOADS, all_product_keys,  # noqa: E402
                                  epoch_steps, flops_and_bound, plan, step_products)

MEASURE = Path(__file__).resolve().parent / "measure.py"
# What --isa avx2 sets in every child process, so that a CPU with AVX-512 runs both libraries as an
# AVX2-only CPU would: NumPy's loops (the AVX-512 targets of its dispatch list, filled in by
# isa_env), PyTorch's kernels, and the BLAS libraries' own kernel choice.
AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "OPENBLAS_CORETYPE": "Haswell",
            "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
UNITS = {"epoch": "s/epoch", "loglik": "s/10k images", "steps": "s/step"}
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def log(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------- child processes

def isa_env(isa: str) -> dict:
    """The environment that makes a child process run at instruction set ``isa``: nothing for
    "native"; for "avx2", :data:`AVX2_ENV` and NPY_DISABLE_CPU_FEATURES naming NumPy's AVX-512
    dispatch targets (X86_V4, AVX512_*; disabling one the CPU lacks is allowed)."""
    if isa == "native":
        return {}
    from benchmarks.measure import numpy_dispatch
    avx512 = [f for f in numpy_dispatch()["targets"] if f == "X86_V4" or f.startswith("AVX512")]
    return {**AVX2_ENV, "NPY_DISABLE_CPU_FEATURES": " ".join(avx512)}


def child(spec: dict) -> dict:
    """Run ``measure.py spec`` in a fresh interpreter; its RESULT dict, or {"error": ...}."""
    path = [str(REPO)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path), **spec.get("env", {}))
    if spec.get("threads"):                     # BLAS pools read these when they start
        env.update({k: str(spec["threads"]) for k in THREAD_VARS})
    proc = subprocess.run([sys.executable, str(MEASURE), json.dumps(spec)], cwd=REPO, env=env,
                          capture_output=True, text=True)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
    log(f"    {spec.get('lib')} {spec.get('task')} failed (exit {proc.returncode}): {tail}")
    return {"error": f"exit {proc.returncode}: {tail}"}


# ---------------------------------------------------------------- the machine

def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def numpy_blas() -> dict:
    import numpy as np
    out = {"numpy": np.__version__, "blas": None}
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        out["blas"] = f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # NumPy < 1.26 has no mode="dicts"
        pass
    try:
        from threadpoolctl import threadpool_info
        out["threadpools"] = [{k: d.get(k) for k in ("internal_api", "version", "num_threads",
                                                     "architecture")} for d in threadpool_info()]
    except ImportError:
        pass
    return out


def git_commit() -> str | None:
    def git(*a):
        return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    try:
        rev = git("rev-parse", "--short", "HEAD")
        return (rev + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")
                ) or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine(args, s) -> dict:
    cli = sys.argv[1:] if args.argv is None else list(args.argv)
    return {"command": shlex.join(["python", "benchmarks/run.py", *cli]),
            "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "device": args.device, "quick": args.quick, "settings": s,
            "isa": args.isa, "isa_env": isa_env(args.isa),
            "minivae_commit": git_commit(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
            "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "python": platform.python_version(), "platform": platform.platform(), **numpy_blas(),
            "threads": args.threads or os.cpu_count(),
            "thread_env": {k: os.environ[k] for k in THREAD_VARS if os.environ.get(k)},
            "load_avg_start": os.getloadavg()}


# ---------------------------------------------------------------- summaries

def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(runs: dict, value) -> dict:
    """Median of ``value(record)`` per library over the repeats, and the ratio minivae / torch
    of each repeat's pair (measured back to back), with its median."""
    medians = {lib: _median([value(r) for r in rr if "error" not in r]) for lib, rr in runs.items()}
    pairs = zip(runs.get("minivae", []), runs.get("torch", []))
    ratios = [value(a) / value(b) for a, b in pairs if "error" not in a and "error" not in b]
    return {"median_s": medians, "ratios": ratios, "ratio": _median(ratios)}


def memory(runs: dict) -> dict:
    """Per library: the highest peak RSS and GPU pool over the repeats, the median starting RSS."""
    out = {}
    for lib, records in runs.items():
        ok = [r for r in records if "error" not in r]
        pools = [r["pool_mib"] for r in ok if r.get("pool_mib") is not None]
        out[lib] = {"rss_peak_mib": max((r["rss_peak_mib"] for r in ok), default=None),
                    "rss_base_mib": _median([r["rss_base_mib"] for r in ok]),
                    "pool_mib": max(pools, default=None)}
    return out


def with_bound(entry: dict, passes, gflops: dict) -> dict:
    flops, bound = flops_and_bound(passes, gflops)
    frac = {lib: (bound / t if bound and t else None) for lib, t in entry["median_s"].items()}
    return {**entry, "flops": flops, "bound_s": bound, "fraction_of_bound": frac}


# ---------------------------------------------------------------- the run

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu",
                   help="cpu: minivae NumPy vs PyTorch CPU; gpu: minivae CuPy vs PyTorch CUDA")
    p.add_argument("--quick", action="store_true",
                   help="tiny step counts and 1 repeat: checks the harness, times nothing useful")
    p.add_argument("--repeats", type=int, default=None, help="runs per library (default 3; quick 1)")
    p.add_argument("--isa", choices=["native", "avx2"], default="native",
                   help="avx2: run both libraries with AVX-512 turned off (NumPy's loops, PyTorch's "
                        "kernels, the BLAS), so one AVX-512 machine also measures an AVX2 CPU")
    p.add_argument("--out", default=None,
                   help="default benchmarks/results (--isa native) or benchmarks/results/avx2")
    p.add_argument("--data-dir", default=None, help="MNIST folder (default: $MINIVAE_DATA, ...)")
    p.add_argument("--only", default=None,
                   help=f"comma-separated workload ids (default all: {','.join(BY_ID)})")
    p.add_argument("--only-minivae", action="store_true", help="skip the PyTorch peer")
    p.add_argument("--max-steps", type=int, default=None,
                   help="time at most N steps of each training workload, extrapolated to an epoch")
    p.add_argument("--ll-images", type=int, default=None,
                   help="test images for workload c (default 10000; quick 20), extrapolated")
    p.add_argument("--ll-k", type=int, default=None,
                   help="importance samples for workload c (default 5000; quick 50)")
    p.add_argument("--ll-repeats", type=int, default=1,
                   help="runs per library of workload c (default 1: minutes each on 2 cores)")
    p.add_argument("--grid", default=None,
                   help="batch x k points of workload d, e.g. 20x1,128x50 (default {20,128,512} x {1,5,50})")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for both libraries (default: every core, os.cpu_count())")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.isa != "native" and args.device == "gpu":
        p.error("--isa is for --device cpu: it sets the CPU instruction set of both libraries")
    args.out = args.out or results_dir(REPO, args.isa)
    args.argv = argv
    return args


def settings(args) -> dict:
    q = args.quick
    return {"repeats": args.repeats or (1 if q else 3), "ll_repeats": args.ll_repeats,
            "warmup": 1 if q else 5, "quick_steps": 5 if q else None, "max_steps": args.max_steps,
            "sweep_steps": 3 if q else 20, "sweep_warmup": 1 if q else 3,
            "ll_images": args.ll_images or (20 if q else N_TEST), "ll_k": args.ll_k or (50 if q else 5000),
            "matmul_min_time": 0.01 if q else 0.1, "matmul_rounds": 1 if q else 3}


def peers(args, base, meta, notes) -> list | None:
    """The libraries to run: minivae, and torch where it imports (and sees CUDA for --device gpu)."""
    libs = ["minivae"]
    if args.device == "gpu":
        gpu = child({**base, "task": "info", "lib": "minivae"})
        if "error" in gpu:
            log("--device gpu needs CuPy and a CUDA GPU: " + gpu["error"])
            return None
        meta["minivae_gpu"] = gpu
    if args.only_minivae:
        notes.append("PyTorch skipped (--only-minivae).")
        return libs
    info = child({**base, "task": "info", "lib": "torch"})
    if "error" in info or (args.device == "gpu" and not info.get("cuda")):
        notes.append("PyTorch skipped: it could not be imported"
                     + (" or sees no CUDA GPU" if args.device == "gpu" else "")
                     + f" ({info.get('error', 'no CUDA')}). Install it with `pip install torch==2.13.0`.")
        log(notes[-1])
        return libs
    meta["torch"] = info
    return libs + ["torch"]


def throughput(args, base, s, workloads, libs) -> dict:
    """GFLOP/s at 2048^3 and at every layer shape of the workloads (NumPy or CuPy), and PyTorch's
    2048^3 figure for context."""
    keys = all_product_keys(workloads, s["ll_images"], s["ll_k"])
    log(f"matrix-product throughput: 2048^3 and {len(keys)} layer shapes ...")
    timing = {"min_time": s["matmul_min_time"], "rounds": s["matmul_rounds"]}
    thr = child({**base, **timing, "task": "matmul", "keys": keys,
                 "lib": "cupy" if args.device == "gpu" else "numpy"})
    if "torch" in libs:
        thr["torch_peak_2048"] = child({**base, **timing, "task": "matmul", "keys": [],
                                        "lib": "torch-cuda" if args.device == "gpu" else "torch"}
                                       ).get("peak_2048")
    log(f"  peak {thr.get('peak_2048') or float('nan'):.1f} GFLOP/s"
        + (f" (PyTorch {thr['torch_peak_2048']:.1f})" if thr.get("torch_peak_2048") else ""))
    return thr


def alternate(spec: dict, libs, repeats: int, value) -> dict:
    """{lib: [record per repeat]}, running minivae, torch, minivae, torch, ..."""
    runs = {lib: [] for lib in libs}
    for r in range(repeats):
        for lib in libs:
            t0 = time.perf_counter()
            rec = child({**spec, "lib": lib})
            runs[lib].append(rec)
            if "error" not in rec:
                shown = (f"{value(rec):.3g} {UNITS[spec['task']]}" if value else
                         f"{len(rec['grid'])} step timings")
                log(f"  {spec['workload']:11s} repeat {r + 1}/{repeats}  {lib:7s}  {shown}, peak RSS "
                    f"{rec['rss_peak_mib']:.0f} MiB  ({time.perf_counter() - t0:.0f} s wall)")
    return runs


def run_epoch(w, base, s, libs, gflops) -> dict:
    steps = w.steps
    for cap in (s["quick_steps"], s["max_steps"]):
        steps = cap if steps is None else (steps if cap is None else min(steps, cap))
    n_steps = epoch_steps(w.batch)
    value = lambda r: r["seconds_per_epoch"]                                   # noqa: E731
    runs = alternate({**base, "task": "epoch", "workload": w.id, "steps": steps,
                      "warmup": s["warmup"]}, libs, s["repeats"], value)
    measured = (f"full epoch ({n_steps} steps)" if steps is None or steps >= n_steps
                else f"{steps} of {n_steps} steps, extrapolated")
    entry = {"id": w.id, "label": w.label, "kind": w.kind, "unit": UNITS["epoch"],
             "measured": measured, "batch": w.batch, "k": w.k, "objective": w.objective,
             "adam_eps": w.adam_eps, "binarize": w.binarize, **summarize(runs, value),
             "memory": memory(runs), "runs": runs}
    return with_bound(entry, plan(w), gflops)


def run_loglik(w, base, s, libs, gflops) -> dict:
    n, k = s["ll_images"], s["ll_k"]
    value = lambda r: r["seconds_per_10000"]                                   # noqa: E731
    runs = alternate({**base, "task": "loglik", "workload": w.id, "ll_images": n, "ll_k": k},
                     libs, s["ll_repeats"], value)
    measured = (f"{N_TEST:,} test images" if n >= N_TEST
                else f"{n:,} images, extrapolated to {N_TEST:,}")
    entry = {"id": w.id, "label": f"Burda model, test log-likelihood L_k, k={k}", "kind": w.kind,
             "unit": UNITS["loglik"], "measured": measured, "batch": None, "k": k, "images": n,
             **summarize(runs, value), "memory": memory(runs), "runs": runs,
             "nll": {lib: _median([r.get("nll") for r in rr if "error" not in r])
                     for lib, rr in runs.items()}}
    return with_bound(entry, plan(w, n, k), gflops)


def run_sweep(w, base, s, libs, gflops) -> tuple[list, dict, dict]:
    runs = alternate({**base, "task": "steps", "workload": w.id, "steps": s["sweep_steps"],
                      "warmup": s["sweep_warmup"], "grid": w.grid}, libs, s["repeats"], None)
    rows = []
    for batch, k in w.grid:
        key = f"{batch}x{k}"
        entry = {"batch": batch, "k": k, **summarize(runs, lambda r: r["grid"][key]["median_s"])}
        rows.append(with_bound(entry, [(step_products(w.model, batch, k), 1)], gflops))
    return rows, memory(runs), runs


def main(argv=None) -> int:
    args = parse_args(argv)
    s = settings(args)
    try:
        workloads = WORKLOADS if not args.only else [BY_ID[i.strip()] for i in args.only.split(",")]
        if args.grid:
            grid = tuple(tuple(int(v) for v in g.split("x")) for g in args.grid.split(","))
            workloads = [dataclasses.replace(w, grid=grid) if w.kind == "steps" else w
                         for w in workloads]
    except (KeyError, ValueError) as err:
        print(f"bad --only or --grid ({err}): workloads are {', '.join(BY_ID)}; a grid reads "
              "like 20x1,128x50", file=sys.stderr)
        return 2
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    base = {"device": args.device, "seed": args.seed, "data_dir": args.data_dir,
            "threads": args.threads, "env": isa_env(args.isa)}
    meta, notes = machine(args, s), []
    libs = peers(args, base, meta, notes)
    if libs is None:
        return 2
    meta["numpy_dispatch"] = child({**base, "task": "info", "lib": "minivae"}).get("numpy_dispatch")
    thr = throughput(args, base, s, workloads, libs)
    gflops = thr.get("shapes", {})

    results = {"meta": meta, "throughput": thr, "workloads": [], "step_sweep": [], "notes": notes}
    for w in workloads:
        if w.kind == "epoch":
            results["workloads"].append(run_epoch(w, base, s, libs, gflops))
        elif w.kind == "loglik":
            results["workloads"].append(run_loglik(w, base, s, libs, gflops))
        else:
            (results["step_sweep"], results["step_sweep_memory"],
             results["step_sweep_runs"]) = run_sweep(w, base, s, libs, gflops)
    meta["load_avg_end"] = os.getloadavg()

    (out_dir / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    md = markdown(results)
    (out_dir / "results.md").write_text(md)
    log("\n" + md)
    log(f"wrote {out_dir / 'results.json'} and {out_dir / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
