r"""Data parallelism over MPI on this machine: 1 process against 2 ranks, and the scaling model.

    python benchmarks/distributed.py [--quick] [--repeats N] [--steps S] [--ll-images N]
                                     [--ll-k K] [--out benchmarks/results]

Three configurations, each a fresh set of processes, run in turn ``--repeats`` times:

    1 process, 2 BLAS threads     python                 (what one process gets from 2 cores)
    1 process, 1 BLAS thread      python                 (one rank's share)
    2 ranks, 1 BLAS thread each   mpiexec -n 2 python    (minivae.distributed)

and in each, float32 on NumPy, the Burda et al. model 784-200-200-50 tanh (~0.42 M parameters):

    train    IWAE k = 50 at batch 20 (the paper's), ``--steps`` steps of minivae.train.train on
             MNIST after a warm-up: examples per second; the time each rank spends in
             distributed.allreduce_grads per step (the reduction and the wait for the slower
             rank), a bare Allreduce of the same buffer (median of 50), and what drawing the whole
             batch's noise on every rank costs beyond drawing its own shard's
    loglik   L_k (k = 5000) of the untrained model on ``--ll-images`` binarised test images,
             blocked draws (the same numbers in every configuration): images per second

and, once, one training step of the convolutional VAE (minivae.conv_vae.ConvVAE, its defaults) on
one thread, for its parameter count and step time.  Writes ``distributed.json`` and
``distributed.md`` to ``--out``, with the scaling model on paper: the number of ranks at which a
ring Allreduce (2 (N-1)/N of the gradient's bytes sent and received by each rank) costs as much
as the shrinking step, on 10 and 100 Gb/s networks.  See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
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

BATCH, K_TRAIN = 20, 50
CONFIGS = [  # (name, ranks, BLAS threads per rank)
    ("1 process, 2 threads", 1, 2),
    ("1 process, 1 thread", 1, 1),
    ("2 ranks, 1 thread each", 2, 1),
]
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# Open MPI refuses root unless told (containers and CI run as root)
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
NETWORKS = {"10 Gb/s": 10e9 / 8, "100 Gb/s": 100e9 / 8}          # bytes per second
LATENCY = 5e-6            # seconds per message of the ring, a fast network's order of magnitude


def log(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------- the child: one measurement

def _data(spec):
    from minivae.data import load_dataset
    return load_dataset("mnist", spec.get("data_dir") or os.environ.get("MINIVAE_DATA"),
                        offline=True)


def child_train(spec) -> dict:
    """IWAE k=50 steps at batch 20 with minivae.train.train, timed per rank."""
    import numpy as np

    from benchmarks.runners import make_minivae_model
    from minivae import distributed
    from minivae.backend import get_backend
    from minivae.train import TrainConfig, draw_batch, train
    size, rank = distributed.world()
    ds = _data(spec)
    model = make_minivae_model("burda", get_backend("numpy", 0))
    cfg = TrainConfig(epochs=1, batch_size=BATCH, objective="iwae", k=K_TRAIN, lr=1e-3,
                      adam_eps=1e-4, eval_batch=100)
    x_test = ds.x_test[:100]
    train(model, ds.x_train[-spec["warmup"] * BATCH:], x_test, cfg, log=lambda s: None)

    spent = {"seconds": 0.0, "calls": 0}
    reduce = distributed.allreduce_grads

    def timed(grads, weight):                    # train() calls it through the module
        t0 = time.perf_counter()
        out = reduce(grads, weight)
        spent["seconds"] += time.perf_counter() - t0
        spent["calls"] += 1
        return out
    distributed.allreduce_grads = timed
    history = train(model, ds.x_train[:spec["steps"] * BATCH], x_test, cfg, log=lambda s: None)
    distributed.allreduce_grads = reduce
    seconds = history[-1]["seconds"]                                # the slowest rank's
    n_params = sum(p.size for p in model.params.values())

    # a bare Allreduce of the same buffer, every rank starting together
    flat = {"flat": np.zeros(n_params, dtype=np.float32)}
    bare = []
    for _ in range(50 if size > 1 else 0):
        distributed.allreduce_sum(0.0)                              # line the ranks up
        t0 = time.perf_counter()
        distributed.allreduce_grads(flat, 1.0)
        bare.append(distributed.allreduce_max(time.perf_counter() - t0))

    # the noise: the whole batch's (what each rank draws) against its own shard's only
    X = model.xp.asarray(ds.x_train[:BATCH], dtype=np.float32)
    mine = distributed.shard(BATCH, max(size, 2), 0)
    draw = {}
    for what, rows in (("global", X), ("shard", X[mine])):
        rng = model.backend.generator("train", 99)
        t0 = time.perf_counter()
        for _ in range(100):
            draw_batch(model, rows, cfg, rng)
        draw[what] = (time.perf_counter() - t0) / 100
    return {"steps": spec["steps"], "seconds": seconds,
            "examples_per_s": spec["steps"] * BATCH / seconds,
            "step_ms": 1e3 * seconds / spec["steps"], "n_params": int(n_params),
            "bytes_per_step": int(n_params * 4) if size > 1 else 0,
            "allreduce_ms_per_step": (1e3 * distributed.allreduce_max(spent["seconds"])
                                      / max(spent["calls"], 1)) if size > 1 else 0.0,
            "bare_allreduce_ms": 1e3 * statistics.median(bare) if bare else None,
            "draw_global_ms": 1e3 * draw["global"], "draw_shard_ms": 1e3 * draw["shard"]}


def child_loglik(spec) -> dict:
    """L_k on the first ``ll_images`` test images, in blocks split over the ranks."""
    from benchmarks.runners import make_minivae_model
    from minivae import distributed
    from minivae.backend import get_backend
    from minivae.data import binarize_fixed
    from minivae.evaluate import log_likelihood, summarize
    ds = _data(spec)
    model = make_minivae_model("burda", get_backend("numpy", 0))
    x = binarize_fixed(ds.x_test[:spec["ll_images"]], 0)
    block = max(1, spec["ll_images"] // 8)
    log_likelihood(model, x[:1], min(spec["ll_k"], 500), key=(1,), block_size=1,
                   distributed=False)                                           # warm-up
    distributed.allreduce_sum(0.0)
    t0 = time.perf_counter()
    ll = log_likelihood(model, x, spec["ll_k"], key=(0,), block_size=block)
    seconds = distributed.allreduce_max(time.perf_counter() - t0)
    return {"images": len(x), "k": spec["ll_k"], "block_size": block, "seconds": seconds,
            "images_per_s": len(x) / seconds, "nll": summarize(ll)["nll"]}


def child_conv(spec) -> dict:
    """One training step of the default ConvVAE (ELBO, batch 32) on one thread, after one."""
    import numpy as np
    try:
        from minivae.conv_vae import ConvVAE
    except ImportError as err:
        return {"error": f"no ConvVAE here ({err})"}
    from minivae.optim import Adam
    model = ConvVAE(seed=0)
    x = (np.random.default_rng(0).random((32, model.x_dim)) < 0.5).astype(np.float32)
    opt, times = Adam(lr=1e-3, eps=1e-4), []
    for _ in range(spec["conv_steps"] + 1):
        t0 = time.perf_counter()
        _, grads, _ = model.loss_and_grads(x, "elbo", 1)
        opt.step(model.params, grads)
        times.append(time.perf_counter() - t0)
    return {"n_params": int(sum(p.size for p in model.params.values())), "batch": 32,
            "config": model.config, "step_ms": 1e3 * statistics.median(times[1:])}


def child(spec) -> int:
    from minivae import distributed
    result = {"train": child_train, "loglik": child_loglik, "conv": child_conv}[spec["task"]](spec)
    if distributed.is_root():
        print("RESULT " + json.dumps(result), flush=True)
    return 0


# ---------------------------------------------------------------- the parent

def mpiexec() -> str | None:
    import shutil
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


def launch(spec: dict, ranks: int, threads: int) -> dict:
    """Run this file as ``--child spec`` on ``ranks`` ranks of ``threads`` BLAS threads each;
    its RESULT dict, or {"error": ...}."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_", "PMIX_", "PRTE_"))}
    env.update({k: str(threads) for k in THREAD_VARS}, PYTHONPATH=str(REPO))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    if ranks > 1:
        launcher = mpiexec()
        if launcher is None:
            return {"error": "no mpiexec: pip install -e '.[mpi]'"}
        over = ["--oversubscribe"] if (os.cpu_count() or 1) < ranks else []
        cmd = [launcher, *over, "-n", str(ranks)] + cmd
        env.update(MPI_ENV)
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = ((proc.stderr + proc.stdout).strip().splitlines() or ["(no output)"])[-1]
    log(f"    {spec['task']} on {ranks} rank(s) failed (exit {proc.returncode}): {tail}")
    return {"error": f"exit {proc.returncode}: {tail}"}


def crossover(step_s: float, n_bytes: float, bandwidth: float, latency: float = 0.0) -> int:
    r"""The smallest N at which a ring Allreduce costs as much as the step on N ranks:

        T_step / N  <=  2 (N - 1) latency + 2 (N - 1) / N * bytes / bandwidth

    (the step shrinks as the batch is split; each rank sends and receives 2 (N-1)/N of the
    buffer in 2 (N-1) messages).  Without latency: N = 1 + T_step bandwidth / (2 bytes)."""
    n = 2
    while step_s / n > 2 * (n - 1) * latency + 2 * (n - 1) / n * n_bytes / bandwidth:
        n += 1
    return n


def _median(runs, key):
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def summarize_runs(results: dict) -> dict:
    out = {}
    for name, runs in results.items():
        ok = {task: [r for r in rs if "error" not in r] for task, rs in runs.items()}
        out[name] = {task: ({key: _median(rs, key) for key in rs[0]} if rs else None)
                     for task, rs in ok.items()}
    return out


def scaling(summary: dict, conv: dict | None) -> list:
    """The scaling model's rows: per model and network, the crossover number of ranks."""
    one = summary["1 process, 1 thread"]["train"]
    rows = []
    models = [("Burda 784-200-200-50, IWAE k=50, batch 20", one["n_params"], one["step_ms"])]
    if conv and "error" not in conv:
        models.append((f"ConvVAE {conv['config'].get('channels')}, ELBO, batch {conv['batch']}",
                       conv["n_params"], conv["step_ms"]))
    for what, n_params, step_ms in models:
        n_bytes = 4 * n_params
        for net, bw in NETWORKS.items():
            rows.append({"model": what, "n_params": n_params, "step_ms": step_ms, "network": net,
                         "ring_ms_large_n": 1e3 * 2 * n_bytes / bw,
                         "ranks": crossover(step_ms / 1e3, n_bytes, bw),
                         "ranks_with_latency": crossover(step_ms / 1e3, n_bytes, bw, LATENCY)})
    return rows


def machine(args) -> dict:
    from benchmarks.measure import numpy_dispatch
    from benchmarks.run import cpu_model, git_commit, numpy_blas
    return {"command": shlex.join(["python", "benchmarks/distributed.py", *args.argv]),
            "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "minivae_commit": git_commit(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
            "isa": "native", "numpy_loops": numpy_dispatch()["level"],
            "python": platform.python_version(), "platform": platform.platform(), **numpy_blas(),
            "mpi": mpi_version(), "load_avg_start": os.getloadavg()}


def mpi_version() -> str | None:
    try:
        proc = subprocess.run([sys.executable, "-m", "mpi4py", "--mpi-lib-version"],
                              capture_output=True, text=True, timeout=60)
        import mpi4py
        return f"mpi4py {mpi4py.__version__}, {proc.stdout.strip().split(',')[0]}"
    except (ImportError, OSError, IndexError, subprocess.SubprocessError):
        return None


def _f(x, digits=3):
    return "–" if x is None else f"{x:.{digits}g}"


def markdown(res: dict) -> str:
    m, s, summ = res["machine"], res["settings"], res["summary"]
    lines = ["# minivae over MPI: 1 process against 2 ranks", "",
             f"- **Command:** `{m['command']}` ({m['date_utc']}, minivae {m['minivae_commit']})",
             f"- **Hardware:** {m['cpu']}, {m['cpu_count']} cores; NumPy {m['numpy']} "
             f"({m['blas']}); NumPy loops at {m['numpy_loops']} (--isa {m['isa']}); "
             f"Python {m['python']}; {m['mpi']}",
             f"- **Protocol:** each configuration a fresh set of processes, in turn, "
             f"{s['repeats']} time(s), medians shown; training: {s['steps']} steps of IWAE "
             f"k={K_TRAIN} at batch {BATCH} (float32, Burda 784-200-200-50 tanh) after "
             f"{s['warmup']} warm-up steps, the slowest rank's time; L_k: k={s['ll_k']} on "
             f"{s['ll_images']} test images in blocks (the same draws in every configuration).",
             "",
             "| configuration | training, examples/s | step, ms | in allreduce_grads, ms/step "
             "| bare Allreduce, ms | L_k, images/s | test NLL (check) |",
             "|---|---|---|---|---|---|---|"]
    for name, _, _ in CONFIGS:
        t, ll = summ[name]["train"] or {}, summ[name]["loglik"] or {}
        reduce_ms = _f(t.get("allreduce_ms_per_step")) if t.get("bytes_per_step") else "–"
        lines.append(f"| {name} | {_f(t.get('examples_per_s'))} | {_f(t.get('step_ms'))} | "
                     f"{reduce_ms} | "
                     f"{_f(t.get('bare_allreduce_ms'))} | {_f(ll.get('images_per_s'))} | "
                     f"{_f(ll.get('nll'), 8)} |")
    two, one2 = summ["2 ranks, 1 thread each"], summ["1 process, 2 threads"]
    one1 = summ["1 process, 1 thread"]
    if two["train"] and one2["train"] and one1["train"]:
        t = two["train"]
        extra = t["draw_global_ms"] - t["draw_shard_ms"]
        lines += ["", f"2 ranks against 1 process on 2 threads: training "
                  f"{t['examples_per_s'] / one2['train']['examples_per_s']:.2f}x, against 1 "
                  f"thread {t['examples_per_s'] / one1['train']['examples_per_s']:.2f}x"
                  + (f"; L_k {two['loglik']['images_per_s'] / one2['loglik']['images_per_s']:.2f}x"
                     f" and {two['loglik']['images_per_s'] / one1['loglik']['images_per_s']:.2f}x"
                     if two["loglik"] and one2["loglik"] and one1["loglik"] else "") + ".",
                  "",
                  f"Communication per step: {int(t['bytes_per_step']):,} bytes reduced (the "
                  f"{int(t['n_params']):,} float32 gradients, one buffer); "
                  f"{_f(t['allreduce_ms_per_step'])} ms a step in allreduce_grads "
                  f"({100 * t['allreduce_ms_per_step'] / t['step_ms']:.1f} % of the step; it "
                  f"includes waiting for the slower rank), of which a bare Allreduce of the same "
                  f"buffer takes {_f(t['bare_allreduce_ms'])} ms (shared memory, one machine).",
                  "",
                  f"Noise: each rank draws the whole batch's noise, B (P + k D) = {BATCH} x (784 + "
                  f"{K_TRAIN} x 50) numbers, in {_f(t['draw_global_ms'])} ms against "
                  f"{_f(t['draw_shard_ms'])} ms for its own shard's: {_f(extra)} ms more, "
                  f"{100 * extra / t['step_ms']:.1f} % of a 2-rank step."]
    rows = res.get("scaling") or []
    if rows:
        lines += ["", "## The scaling model on paper", "",
                  "A ring Allreduce sends and receives 2 (N-1)/N of the gradient's bytes S per "
                  "rank in 2 (N-1) messages; the step on B/N examples takes about T_1 / N (T_1: one "
                  "rank's step on the whole batch, 1 thread, measured above). The Allreduce costs "
                  "as much as the step at the smallest N with T_1 / N <= 2 (N-1) a + "
                  "2 (N-1)/N S / bandwidth; with a = 0, N = 1 + T_1 bandwidth / (2 S). "
                  f"a = {LATENCY * 1e6:g} µs per message in the last column.", "",
                  "| model | parameters | T_1, ms | network | ring Allreduce at large N, ms "
                  "| N (a = 0) | N (with a) |", "|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['model']} | {int(r['n_params']):,} | {_f(r['step_ms'])} | "
                         f"{r['network']} | {_f(r['ring_ms_large_n'])} | {r['ranks']} | "
                         f"{r['ranks_with_latency']} |")
        lines += ["", f"The batch bounds N first: at the paper's batch of {BATCH} a rank needs at "
                  f"least one example, so N <= {BATCH}, and a shard of one or two examples runs "
                  "well below its share of the machine (the step does not shrink as T_1 / N); "
                  "past that, data parallelism means a larger batch, which changes the "
                  "optimisation, not only its speed."]
    if res.get("conv_error"):
        lines += ["", f"ConvVAE not measured: {res['conv_error']}."]
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true",
                   help="a few steps, 4 images, k=200, 1 repeat: checks the harness only")
    p.add_argument("--repeats", type=int, default=None, help="default 2 (quick 1)")
    p.add_argument("--steps", type=int, default=None, help="timed training steps (default 150)")
    p.add_argument("--ll-images", type=int, default=None, help="test images for L_k (default 40)")
    p.add_argument("--ll-k", type=int, default=None, help="samples per image (default 5000)")
    p.add_argument("--data-dir", default=None, help="MNIST folder (default: $MINIVAE_DATA)")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = p.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        return child(json.loads(args.child))
    q = args.quick
    s = {"repeats": args.repeats or (1 if q else 2), "steps": args.steps or (6 if q else 150),
         "warmup": 2 if q else 10, "ll_images": args.ll_images or (4 if q else 40),
         "ll_k": args.ll_k or (200 if q else 5000), "conv_steps": 1 if q else 3}
    base = {"data_dir": args.data_dir, **s}
    res = {"machine": machine(args), "settings": s}
    runs = {name: {"train": [], "loglik": []} for name, _, _ in CONFIGS}
    for rep in range(s["repeats"]):
        for name, ranks, threads in CONFIGS:
            for task in ("train", "loglik"):
                log(f"[{rep + 1}/{s['repeats']}] {task}: {name} ...")
                r = launch({**base, "task": task}, ranks, threads)
                runs[name][task].append(r)
                if "error" not in r:
                    log("    " + (f"{r['examples_per_s']:.1f} examples/s" if task == "train"
                                  else f"{r['images_per_s']:.2f} images/s, NLL {r['nll']:.4f}"))
    log("ConvVAE: one step on 1 thread ...")
    conv = launch({**base, "task": "conv"}, 1, 1)
    res.update(runs=runs, summary=summarize_runs(runs), conv=conv)
    if "error" in conv:
        res["conv_error"] = conv["error"]
    if res["summary"]["1 process, 1 thread"]["train"]:
        res["scaling"] = scaling(res["summary"], conv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "distributed.json").write_text(json.dumps(res, indent=1) + "\n")
    (out / "distributed.md").write_text(markdown(res))
    log(f"wrote {out / 'distributed.json'} and {out / 'distributed.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
