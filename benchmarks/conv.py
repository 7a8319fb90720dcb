r"""minivae's ConvVAE against the same model in PyTorch on the CPU (float32), one command:

    python benchmarks/conv.py [--repeats N] [--threads N] [--isa native|avx2] [--quick]

Times, side by side, (1) one training step of the ConvVAE at batch 64, minivae's
``loss_and_grads`` + ``Adam.step`` against PyTorch's forward, backward and ``optim.Adam`` step, and
(2) single convolutions, forward + backward, minivae's ``Conv2d`` / ``ConvTranspose2d`` against
``F.conv2d`` / ``F.conv_transpose2d`` with autograd.  The protocol is ``run.py``'s: every
measurement in a fresh process, minivae and PyTorch alternating (minivae, torch, minivae, ...),
``--repeats`` runs each; a run's time is the median over its timed steps (calls), the table gives
the median over runs and the ratio minivae / PyTorch of each back-to-back pair (median and range).
Writes ``conv.json`` and ``conv.md`` to ``--out`` (default ``benchmarks/results``, or
``benchmarks/results/avx2`` with ``--isa avx2``).

The model is the one the example trains (:data:`MODEL`): ConvVAE((1, 28, 28), latent_dim=32,
channels=(32, 64, 64), activation="relu", likelihood="bernoulli"), the ELBO with the analytic KL,
k = 1, Adam lr 1e-3 (betas 0.9, 0.999, eps 1e-8), on batches of the first (at most 16 x 64)
MNIST training images binarised once (``binarize_fixed``), cycled, the same in both libraries;
random binary images when MNIST is not found (``--data-dir``, else $MINIVAE_DATA; nothing is
downloaded).  Each library draws its own eps per step, as the training loops do.  The PyTorch
model is built from the minivae one with its weights copied (:mod:`benchmarks.peer_torch_conv`).

FLOPs.  Only matrix products are counted, from the layer shapes.  A Conv2d making an
(H_out, W_out) image of N inputs is one product of N H_out W_out rows, C_in kh kw inputs and C_out
outputs (im2col):

    forward  2 N H_out W_out C_out C_in kh kw,   and the same again for dW and for dx;

a ConvTranspose2d on an (H, W) input is the product of N H W rows, C_in inputs and C_out kh kw
outputs (2 N H W C_in C_out kh kw each); a Dense layer 2 N I O each.  The first layer of the
encoder has no dx (x is data: minivae's Sequential skips it, PyTorch's autograd too).  The bound
is the sum over the products of their FLOPs at the GEMM rate NumPy reaches at each product's own
shape, measured in the same run by ``benchmarks/measure.py`` (as run.py does); % of bound =
bound / time.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.workloads import Product  # noqa: E402

MODEL = dict(image_shape=(1, 28, 28), latent_dim=32, channels=(32, 64, 64), activation="relu",
             likelihood="bernoulli")
BATCH, K = 64, 1
ADAM = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8)
# (name, label, layer, c_in, c_out, kernel, stride, padding, output_padding, H, need_dx), N = BATCH
CONV_CASES = [
    ("enc-first", "encoder's first Conv2d 1->32 3x3, 28x28 (no dx)",
     "Conv2d", 1, 32, 3, 1, 1, 0, 28, False),
    ("block-14", "Conv2d 64->64 3x3, 14x14 (a block's conv2)", "Conv2d", 64, 64, 3, 1, 1, 0, 14, True),
    ("up-28", "ConvTranspose2d 64->32 4x4 stride 2, 14x14 -> 28x28 (decoder up block's conv1)",
     "ConvTranspose2d", 64, 32, 4, 2, 1, 0, 14, True),
    ("block-28", "Conv2d 32->32 3x3, 28x28 (decoder up block's conv2)",
     "Conv2d", 32, 32, 3, 1, 1, 0, 28, True),
]
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
LIB_NAMES = {"minivae": "minivae", "torch": "PyTorch"}


def log(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------- FLOPs, from the layer shapes

def layer_products(layer, shape: tuple, n: int, need_dx: bool, label: str):
    r"""([(label, Product)], output shape) of one minivae layer on n inputs of shape ``shape``.

    Conv2d (C, H, W) -> (C_out, H_out, W_out):  N H_out W_out rows, C kh kw -> C_out   (im2col)
    ConvTranspose2d (C, H, W) -> (C_out, ...):  N H W rows, C -> C_out kh kw           (col2im)
    Dense (I,) -> (O,):                         N rows, I -> O
    each as "fwd" and "dW", and "dx" when ``need_dx``; a ResidualBlock is its convolutions (conv2
    always with dx); reshapes, activations and biases have no products.
    """
    from minivae import conv as C
    from minivae.layers import Dense
    kinds = ("fwd", "dW", "dx") if need_dx else ("fwd", "dW")
    name = f"{label} {type(layer).__name__}"
    if isinstance(layer, C.ResidualBlock):
        p1, mid = layer_products(layer.conv1, shape, n, need_dx, f"{label}.conv1")
        p2, out = layer_products(layer.conv2, mid, n, True, f"{label}.conv2")
        ps = (layer_products(layer.skip, shape, n, need_dx, f"{label}.skip")[0]
              if layer.skip is not None else [])
        return p1 + p2 + ps, out
    if isinstance(layer, (C.Conv2d, C.ConvTranspose2d)):
        c, h, w = shape
        (kh, kw), s, p = layer.kernel, layer.stride, layer.padding
        if isinstance(layer, C.Conv2d):
            h_out, w_out = C.conv_output_size(h, kh, s, p), C.conv_output_size(w, kw, s, p)
            dims = (n * h_out * w_out, c * kh * kw, layer.c_out)
        else:
            h_out, w_out = layer.output_size(h, w)
            dims = (n * h * w, c, layer.c_out * kh * kw)
        return [(name, Product(kind, *dims)) for kind in kinds], (layer.c_out, h_out, w_out)
    if isinstance(layer, Dense):
        n_in, n_out = layer.params["W"].shape
        return [(name, Product(kind, n, n_in, n_out)) for kind in kinds], (n_out,)
    if isinstance(layer, C.Reshape):
        return [], layer.out_shape
    return [], shape                                             # activations, Bias


def network_products(seq, shape: tuple, n: int, need_dx: bool, prefix: str):
    """The products of a Sequential's forward and backward, with Sequential.backward's rule:
    with ``need_dx=False`` the first layer with parameters gets no dx (and nothing before it)."""
    first = next((i for i, layer in enumerate(seq.layers) if layer.params), len(seq.layers))
    out = []
    for i, layer in enumerate(seq.layers):
        products, shape = layer_products(layer, shape, n, need_dx or i > first, f"{prefix}.{i}")
        out += products
    return out


def step_products(model, batch: int, k: int):
    """[(label, Product)] of one training step of a ConvVAE: encoder on B, decoder on K B."""
    return (network_products(model.encoder, (model.x_dim,), batch, False, "encoder")
            + network_products(model.decoder, (model.latent_dim,), k * batch, True, "decoder"))


def conv_case_layer(case, rng=None):
    """The minivae layer of a CONV_CASES entry (float32, He init)."""
    from minivae.conv import Conv2d, ConvTranspose2d
    _, _, kind, c_in, c_out, kernel, stride, padding, out_pad, _, _ = case
    if kind == "Conv2d":
        return Conv2d(c_in, c_out, kernel, stride, padding, rng=rng)
    return ConvTranspose2d(c_in, c_out, kernel, stride, padding, out_pad, rng=rng)


def conv_case_products(case, n: int = BATCH):
    """[(label, Product)] of one forward + backward of a CONV_CASES entry on n images."""
    h, need_dx = case[9], case[10]
    return layer_products(conv_case_layer(case), (case[3], h, h), n, need_dx, case[0])[0]


def make_model(seed: int = 0, dtype: str = "float32"):
    from minivae.conv_vae import ConvVAE
    return ConvVAE(**MODEL, dtype=dtype, seed=seed, backend="numpy")


# ---------------------------------------------------------------- one measurement (a child process)

def _batches(spec, n_batches: int):
    """(x (n_batches, B, P) binary float32, "mnist" | "synthetic"): the same in both libraries."""
    from minivae.data import binarize_fixed, load_dataset
    n = n_batches * BATCH
    try:
        ds = load_dataset("mnist", spec.get("data_dir") or os.environ.get("MINIVAE_DATA"),
                          offline=True)
        x, source = binarize_fixed(ds.x_train[:n], spec.get("seed", 0)), "mnist"
    except Exception as err:                      # not found: random binary images, MNIST's density
        rng = np.random.default_rng(spec.get("seed", 0))
        x = (rng.random((n, 784)) < 0.13).astype(np.float32)
        source = f"synthetic ({type(err).__name__}: MNIST not loaded)"
    return np.ascontiguousarray(x, dtype=np.float32).reshape(n_batches, BATCH, -1), source


def _timed(call, warmup: int, n: int) -> dict:
    times = []
    for j in range(warmup + n):
        t0 = time.perf_counter()
        call(j)
        if j >= warmup:
            times.append(time.perf_counter() - t0)
    return {"median_s": float(np.median(times)), "min_s": float(np.min(times)), "times": times}


def time_step(spec) -> dict:
    """Median seconds of one training step (loss, gradients, Adam), each step timed on its own."""
    from benchmarks.measure import _status_mib, peak_rss_mib, reset_peak_rss
    lib, seed = spec["lib"], spec.get("seed", 0)
    x, source = _batches(spec, min(spec["warmup"] + spec["steps"], 16))
    model = make_model(seed)
    losses = []
    if lib == "minivae":
        from minivae.backend import reuse_freed_memory
        from minivae.optim import Adam
        reuse_freed_memory()                       # as minivae.train does
        opt, rng = Adam(**ADAM), model.backend.generator("train")

        def step(j):
            loss, grads, _ = model.loss_and_grads(x[j % len(x)], "elbo", K, rng=rng,
                                                  check_data=False)
            opt.step(model.params, grads)
            losses.append(loss)
    else:
        import torch

        from benchmarks.peer_torch import make_adam, train_step
        from benchmarks.peer_torch_conv import TorchConvVAE
        torch.set_num_threads(spec.get("threads") or os.cpu_count())
        net = TorchConvVAE.from_minivae(model)
        opt, g, xt = make_adam(net, ADAM["eps"], ADAM["lr"]), torch.Generator(), torch.from_numpy(x)
        g.manual_seed(seed)

        def step(j):
            eps = torch.randn((K, BATCH, net.latent_dim), generator=g)
            losses.append(train_step(net, opt, xt[j % len(xt)], eps, "elbo"))
    base, method = _status_mib("VmRSS"), reset_peak_rss()
    out = _timed(step, spec["warmup"], spec["steps"])
    first, last = float(losses[0]), float(losses[-1])
    if not (math.isfinite(first) and math.isfinite(last)):
        raise FloatingPointError(f"non-finite training loss {first}, {last}")
    if lib == "torch":
        out["mkldnn"] = torch.backends.mkldnn.is_available()       # oneDNN convolutions
    return {**out, "steps": spec["steps"], "warmup": spec["warmup"], "data": source,
            "loss_first": first, "loss_last": last, "rss_base_mib": base,
            "rss_peak_mib": peak_rss_mib(method)}


def time_convs(spec) -> dict:
    """Median seconds of forward + backward of every CONV_CASES layer on BATCH images."""
    lib = spec["lib"]
    out = {}
    if lib == "torch":
        import torch
        import torch.nn.functional as F
        torch.set_num_threads(spec.get("threads") or os.cpu_count())
    for case in CONV_CASES:
        name, _, kind, c_in, _, _, stride, padding, out_pad, h, need_dx = case
        rng = np.random.default_rng(spec.get("seed", 0))
        layer = conv_case_layer(case, rng)
        x = rng.standard_normal((BATCH, c_in, h, h), dtype=np.float32)
        dy = rng.standard_normal(layer.forward(x)[0].shape, dtype=np.float32)
        if lib == "minivae":
            def call(j):
                y, cache = layer.forward(x)
                layer.backward(dy, cache, need_dx=need_dx)
        else:
            xt, dyt = torch.from_numpy(x).requires_grad_(need_dx), torch.from_numpy(dy)
            W, b = (torch.from_numpy(layer.params[p]).requires_grad_() for p in ("W", "b"))
            conv = (lambda a: F.conv2d(a, W, b, stride, padding)) if kind == "Conv2d" else \
                (lambda a: F.conv_transpose2d(a, W, b, stride, padding, out_pad))

            def call(j):
                xt.grad = W.grad = b.grad = None
                conv(xt).backward(dyt)
        out[name] = {**_timed(call, spec["warmup"], spec["steps"]), "calls": spec["steps"]}
    return {"cases": out}


def child_main(spec) -> int:
    task = {"step": time_step, "conv": time_convs}[spec["task"]]
    print("RESULT " + json.dumps(task(spec)))
    return 0


# ---------------------------------------------------------------- the run (the parent process)

def child(spec: dict) -> dict:
    """``conv.py --child spec`` in a fresh interpreter (run.py's ``child``, for this file's tasks):
    its RESULT dict, or {"error": ...}."""
    path = [str(REPO)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path), **spec.get("env", {}))
    if spec.get("threads"):
        env.update({k: str(spec["threads"]) for k in THREAD_VARS})
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child",
                           json.dumps(spec)], cwd=REPO, env=env, capture_output=True, text=True)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
    log(f"    {spec.get('lib')} {spec.get('task')} failed (exit {proc.returncode}): {tail}")
    return {"error": f"exit {proc.returncode}: {tail}"}


def alternate(spec: dict, libs, repeats: int) -> dict:
    """{lib: [record per repeat]}, running minivae, torch, minivae, torch, ..."""
    runs = {lib: [] for lib in libs}
    for r in range(repeats):
        for lib in libs:
            t0 = time.perf_counter()
            rec = child({**spec, "lib": lib})
            runs[lib].append(rec)
            if "error" not in rec:
                shown = (f"{1e3 * rec['median_s']:.1f} ms/step" if spec["task"] == "step" else
                         ", ".join(f"{n} {1e3 * c['median_s']:.2f} ms"
                                   for n, c in rec["cases"].items()))
                log(f"  {spec['task']:4s} repeat {r + 1}/{repeats}  {lib:7s}  {shown}  "
                    f"({time.perf_counter() - t0:.0f} s wall)")
    return runs


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=None, help="runs per library (default 3; quick 1)")
    p.add_argument("--steps", type=int, default=None,
                   help="timed training steps (and calls of each convolution) per run "
                        "(default 10 and 20; quick 2)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3; quick 1)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for both libraries (default: every core, os.cpu_count())")
    p.add_argument("--isa", choices=["native", "avx2"], default="native",
                   help="avx2: both libraries with AVX-512 turned off, as run.py --isa avx2")
    p.add_argument("--quick", action="store_true", help="checks the harness; the numbers mean nothing")
    p.add_argument("--only-minivae", action="store_true", help="skip the PyTorch peer")
    p.add_argument("--out", default=None,
                   help="default benchmarks/results (--isa native) or benchmarks/results/avx2")
    p.add_argument("--data-dir", default=None, help="MNIST folder (default: $MINIVAE_DATA)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for name in ("repeats", "steps", "threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    if args.warmup is not None and args.warmup < 0:
        p.error("--warmup must be at least 0")
    from benchmarks.report import results_dir
    args.out = args.out or results_dir(REPO, args.isa)
    args.argv = argv
    return args


def settings(args) -> dict:
    q = args.quick

    def given(value, default):
        return default if value is None else value
    return {"repeats": given(args.repeats, 1 if q else 3), "warmup": given(args.warmup, 1 if q else 3),
            "step_steps": given(args.steps, 2 if q else 10),
            "conv_calls": given(args.steps, 2 if q else 20),
            "matmul_min_time": 0.01 if q else 0.1, "matmul_rounds": 1 if q else 3,
            "batch": BATCH, "k": K, "model": {k: list(v) if isinstance(v, tuple) else v
                                                  for k, v in MODEL.items()},
            "objective": "elbo (analytic KL)", "adam": ADAM}


def machine(args, s) -> dict:
    from benchmarks.run import cpu_model, git_commit, isa_env, numpy_blas
    cli = sys.argv[1:] if args.argv is None else list(args.argv)
    return {"command": shlex.join(["python", "benchmarks/conv.py", *cli]),
            "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "quick": args.quick, "settings": s, "isa": args.isa, "isa_env": isa_env(args.isa),
            "minivae_commit": git_commit(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
            "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "python": platform.python_version(), "platform": platform.platform(), **numpy_blas(),
            "threads": args.threads or os.cpu_count(),
            "thread_env": {k: os.environ[k] for k in THREAD_VARS if os.environ.get(k)},
            "load_avg_start": os.getloadavg()}


def entry(label: str, runs: dict, value, labelled, thr: dict, unit_note: str) -> dict:
    """One table row: medians, ratios, FLOPs, the bound and the % of it, and every product with
    its measured speed.  ``bound_peak_s`` is the FLOPs at the 2048^3 rate instead, for reference."""
    from benchmarks.run import summarize, with_bound
    products, gflops = [p for _, p in labelled], thr.get("shapes", {})
    row = with_bound({"label": label, "measured": unit_note, **summarize(runs, value)},
                     [(products, 1)], gflops)
    peak = thr.get("peak_2048")
    row["bound_peak_s"] = row["flops"] / (peak * 1e9) if peak else None
    row["products"] = [{"layer": lab, "key": p.key, "flops": p.flops, "gflops": gflops.get(p.key)}
                       for lab, p in labelled]
    return row


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child is not None:
        return child_main(json.loads(args.child))
    from benchmarks.run import child as measure_child
    from benchmarks.run import isa_env
    s = settings(args)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    base = {"seed": args.seed, "data_dir": args.data_dir, "threads": args.threads,
            "env": isa_env(args.isa), "device": "cpu"}
    meta, notes, libs = machine(args, s), [], ["minivae"]
    meta["numpy_dispatch"] = measure_child({**base, "task": "info", "lib": "minivae"}
                                           ).get("numpy_dispatch")
    if args.only_minivae:
        notes.append("PyTorch skipped (--only-minivae).")
    else:
        info = measure_child({**base, "task": "info", "lib": "torch"})
        if "error" in info:
            notes.append(f"PyTorch skipped: it could not be imported ({info['error']}).")
        else:
            meta["torch"], libs = info, libs + ["torch"]

    model = make_model(args.seed)
    step = step_products(model, BATCH, K)
    cases = [conv_case_products(c) for c in CONV_CASES]
    keys = sorted({p.key for _, p in step + [x for c in cases for x in c]},
                  key=lambda k: (Product.from_key(k).flops, k))
    log(f"matrix-product throughput: 2048^3 and {len(keys)} layer shapes ...")
    timing = {"min_time": s["matmul_min_time"], "rounds": s["matmul_rounds"]}
    thr = measure_child({**base, **timing, "task": "matmul", "keys": keys, "lib": "numpy"})
    if "torch" in libs:
        thr["torch_peak_2048"] = measure_child({**base, **timing, "task": "matmul", "keys": [],
                                                "lib": "torch"}).get("peak_2048")
    log(f"  peak {thr.get('peak_2048') or float('nan'):.1f} GFLOP/s"
        + (f" (PyTorch {thr['torch_peak_2048']:.1f})" if thr.get("torch_peak_2048") else ""))

    step_runs = alternate({**base, "task": "step", "steps": s["step_steps"],
                           "warmup": s["warmup"]}, libs, s["repeats"])
    conv_runs = alternate({**base, "task": "conv", "steps": s["conv_calls"],
                           "warmup": s["warmup"]}, libs, s["repeats"])
    rows = [entry(f"ConvVAE training step, batch {BATCH} (ELBO, k = {K}, Adam)", step_runs,
                  lambda r: r["median_s"], step, thr, f"median of {s['step_steps']} steps")]
    for case, labelled in zip(CONV_CASES, cases):
        rows.append(entry(f"{case[1]}, N = {BATCH}, forward + backward",
                          conv_runs, lambda r, n=case[0]: r["cases"][n]["median_s"], labelled,
                          thr, f"median of {s['conv_calls']} calls"))
        rows[-1]["id"] = case[0]
    rows[0]["id"] = "step"
    data = {r.get("data") for r in step_runs["minivae"] if "error" not in r}
    meta["data"] = data.pop() if len(data) == 1 else None
    meta["load_avg_end"] = os.getloadavg()
    results = {"meta": meta, "throughput": thr, "rows": rows,
               "runs": {"step": step_runs, "conv": conv_runs}, "notes": notes}
    (out_dir / "conv.json").write_text(json.dumps(results, indent=1) + "\n")
    md = markdown(results)
    (out_dir / "conv.md").write_text(md)
    log("\n" + md)
    log(f"wrote {out_dir / 'conv.json'} and {out_dir / 'conv.md'}")
    return 0


# ---------------------------------------------------------------- the report

def _ms(x):
    return "–" if x is None else f"{1e3 * x:.3g} ms" if x < 1 else f"{x:.3g} s"


def markdown(res) -> str:
    """conv.json as a header and one table (``python benchmarks/conv.py`` prints it too)."""
    from benchmarks.report import _pct, _ratio, _s, _table, busy_note, dispatch_text
    m, thr = res["meta"], res["throughput"]
    libs = ["minivae"] + (["torch"] if "torch" in m else [])
    lines = ["# minivae ConvVAE vs PyTorch, CPU, float32", ""]
    if m["quick"]:
        lines += ["> **--quick**: 1 repeat of a few steps: this checks the harness; the numbers "
                  "mean nothing.", ""]
    lines += busy_note(m)
    commit = m.get("minivae_commit") or "?"
    commit += " (dirty: uncommitted changes to tracked files)" if commit.endswith("+changes") else ""
    hw = [f"{m['cpu']}, {m['cpu_count']} cores",
          f"NumPy {m['numpy']} ({m.get('blas') or 'BLAS ?'})"]
    if "torch" in m:
        hw.append(f"PyTorch {m['torch']['version']} (BLAS {m['torch'].get('blas')}, "
                  f"{m['torch'].get('threads')} threads)")
    n = m.get("threads")
    hw += [f"Python {m['python']}; both libraries on {n} thread{'' if n == 1 else 's'}",
           dispatch_text(m)]
    speed = f"{_s(thr.get('peak_2048'))} GFLOP/s at 2048³"
    shapes = list(thr.get("shapes", {}).values())
    if shapes:
        speed += f", {_s(min(shapes))}–{_s(max(shapes))} GFLOP/s at the layers' product shapes"
    if thr.get("torch_peak_2048"):
        speed += f"; PyTorch's 2048³: {_s(thr['torch_peak_2048'])} GFLOP/s"
    st = m["settings"]
    mdl = st["model"]
    lines += [f"- **Command:** `{m['command']}` ({m['date_utc']}, minivae {commit})",
              f"- **Hardware:** {'; '.join(hw)}",
              f"- **Model:** ConvVAE({tuple(mdl['image_shape'])}, latent_dim={mdl['latent_dim']}, "
              f"channels={tuple(mdl['channels'])}, {mdl['activation']}, {mdl['likelihood']}), "
              f"batch {st['batch']}, ELBO with the analytic KL, k = {st['k']}, Adam lr "
              f"{st['adam']['lr']:g} eps {st['adam']['eps']:g}; data: {m.get('data') or '?'} "
              f"(binarised)",
              f"- **Matrix products (float32, NumPy `a @ b`):** {speed}",
              "- **Protocol:** each run a fresh process; "
              + ("minivae and PyTorch alternate, " if len(libs) > 1 else "minivae only, ")
              + f"{st['repeats']} run(s) each, {st['warmup']} untimed step(s) first; a run's time is "
              "the median of its steps; the table gives the median over runs"
              + ("; minivae / PyTorch is the median over runs of the back-to-back ratio (below 1: "
                 "minivae is faster), range in brackets" if len(libs) > 1 else "")
              + "; the bound is the matrix-product FLOPs at the GEMM rate measured for each "
              "product's shape, and % of bound = bound / time.", ""]
    lines += [line for note in res["notes"] for line in (f"> {note}", "")]
    head = ["what", "measured", *[LIB_NAMES[x] for x in libs]]
    head += ["minivae / PyTorch"] if len(libs) > 1 else []
    head += ["GFLOP", "matmul bound", *[f"{LIB_NAMES[x]} % of bound" for x in libs]]
    body = []
    for r in res["rows"]:
        row = [r["label"], r["measured"], *[_ms(r["median_s"].get(x)) for x in libs]]
        row += [_ratio(r)] if len(libs) > 1 else []
        row += [f"{r['flops'] / 1e9:.3g}", _ms(r["bound_s"]),
                *[_pct(r["fraction_of_bound"].get(x)) for x in libs]]
        body.append(row)
    foot = ["", "The bound counts minivae's way of computing each layer, im2col products at NumPy's "
            "speed for each product's shape (`conv.json` lists every product and its GFLOP/s): "
            "the last Conv2d's dx (C_out = 1) is an outer product, memory-bound. PyTorch runs "
            "its own convolution kernels (oneDNN where `mkldnn` is true in `conv.json`), so its "
            "% of bound can pass 100 %."]
    return "\n".join(lines + _table(head, body) + foot) + "\n"


if __name__ == "__main__":
    sys.exit(main())
