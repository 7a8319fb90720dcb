r"""One measurement in a fresh process: ``python benchmarks/measure.py '<json spec>'``.

run.py starts one of these per measurement, so each has its own peak host RSS
(``getrusage(RUSAGE_SELF).ru_maxrss``: the process's high-water mark, data loading included) and
no library's threads or allocator state leaks into the next.  The spec is a JSON object:

    {"task": "epoch" | "steps" | "loglik" | "matmul" | "info", "lib": "minivae" | "torch",
     "device": "cpu" | "gpu", "workload": "<id>", "steps": N | null, "warmup": N, "seed": 0,
     "data_dir": "...", "ll_images": N, "ll_k": K, "keys": [...], "min_time": s, "rounds": N}

It prints one line ``RESULT {json}``: the timings plus host memory in MiB: ``rss_base_mib`` (the
resident set just before the timed work: interpreter, library, the data), ``rss_peak_mib`` (the
high-water mark of the timed work alone: the kernel's VmHWM is reset first, see
:func:`reset_peak_rss`), ``rss_load_peak_mib`` (ru_maxrss over the whole process, data loading
included), and ``pool_mib`` (the GPU memory pool, or null).  Run it by hand to repeat one
measurement.
"""
from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0     # KiB on Linux


def _status_mib(field: str):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def reset_peak_rss() -> str:
    """Restart the kernel's RSS high-water mark (VmHWM) so the peak covers the timed work only;
    where Linux refuses, the peak falls back to ru_maxrss (imports and data loading included)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return "VmHWM"
    except OSError:
        return "ru_maxrss"


def peak_rss_mib(method: str) -> float:
    return (_status_mib("VmHWM") if method == "VmHWM" else None) or max_rss_mib()


def numpy_dispatch() -> dict:
    """The SIMD level NumPy's loops run at in this process: the highest of its dispatch targets
    the CPU has and ``NPY_DISABLE_CPU_FEATURES`` leaves on (X86_V4 / AVX512_*: AVX-512; X86_V3:
    AVX2), and every target with whether it is on."""
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:                                     # NumPy 1.x
        from numpy.core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    on = [f for f in __cpu_dispatch__ if __cpu_features__.get(f)]
    return {"level": on[-1] if on else "baseline", "targets": {f: bool(__cpu_features__.get(f))
                                                               for f in __cpu_dispatch__}}


def info(spec) -> dict:
    """Versions, the SIMD level each library dispatches to, and the device: torch's (lib "torch")
    or NumPy's and CuPy's (lib "minivae", CuPy on device "gpu")."""
    out = {}
    if spec["lib"] == "torch":
        import re

        import torch
        cfg = torch.__config__.show()
        blas = re.findall(r"BLAS_INFO=(\w+)", cfg)
        torch.set_num_threads(spec.get("threads") or os.cpu_count())     # as TorchRunner does
        out.update(version=torch.__version__, blas=blas[0] if blas else None,
                   threads=torch.get_num_threads(), cuda=torch.cuda.is_available(),
                   cpu_capability=torch.backends.cpu.get_cpu_capability())
        if spec.get("device") == "gpu" and torch.cuda.is_available():
            out.update(gpu=torch.cuda.get_device_name(0), cuda_version=torch.version.cuda,
                       allow_tf32=torch.backends.cuda.matmul.allow_tf32)
        return out
    out["numpy_dispatch"] = numpy_dispatch()
    if spec.get("device") == "gpu":
        import cupy
        props = cupy.cuda.runtime.getDeviceProperties(0)
        name = props["name"]
        out.update(cupy=cupy.__version__, gpu=name.decode() if isinstance(name, bytes) else name,
                   gpu_memory_gib=props["totalGlobalMem"] / 2 ** 30,
                   cuda_runtime=cupy.cuda.runtime.runtimeGetVersion())
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(argv[0])
    task = spec["task"]
    if task == "info":
        print("RESULT " + json.dumps(info(spec)))
        return 0
    if task == "matmul":
        from benchmarks.throughput import measure
        print("RESULT " + json.dumps(measure(spec["keys"], spec["lib"], spec["min_time"],
                                             spec["rounds"], spec.get("threads"))))
        return 0

    from benchmarks import runners
    from benchmarks.workloads import BY_ID
    from minivae.data import binarize_fixed, load_dataset
    w = BY_ID[spec["workload"]]
    runner = runners.RUNNERS[spec["lib"]](spec.get("device", "cpu"), spec.get("seed", 0),
                                          spec.get("threads"))
    data_dir = spec.get("data_dir") or os.environ.get("MINIVAE_DATA")
    ds = load_dataset("mnist", data_dir, offline=True)
    if task == "loglik":
        x = binarize_fixed(ds.x_test[: spec["ll_images"]], spec.get("seed", 0))
        del ds
        base, method = _status_mib("VmRSS"), reset_peak_rss()
        result = runners.time_loglik(runner, x, w.model, spec["ll_k"])
    else:
        X = runner.to_device(ds.x_train)
        del ds
        base, method = _status_mib("VmRSS"), reset_peak_rss()
        if task == "epoch":
            result = runners.time_epoch(runner, X, w, spec.get("steps"), spec["warmup"])
        elif task == "steps":
            grid = [tuple(g) for g in spec.get("grid") or w.grid]
            result = {"grid": runners.time_steps(runner, X, w.model, grid, spec["steps"],
                                                 spec["warmup"])}
        else:
            raise ValueError(f"unknown task {task!r}")
    pool = runner.pool_bytes()
    result.update(rss_base_mib=base, rss_peak_mib=peak_rss_mib(method), rss_method=method,
                  rss_load_peak_mib=max_rss_mib(), pool_mib=None if pool is None else pool / 2 ** 20)
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
