r"""The results as markdown: a header (command, hardware, throughput, protocol), the table of the
workloads, and the table of the step sweep (workload d).

``markdown(results)`` reads only run.py's results dict, the content of results.json, so a saved
run can be rendered again:  ``python benchmarks/report.py benchmarks/results/results.json``.
"""
from __future__ import annotations

import json
import sys

LIB_NAMES = {"minivae": "minivae", "torch": "PyTorch"}


def _s(x, digits=3):
    """3 significant digits, thousands with a separator; "–" for a missing value."""
    if x is None:
        return "–"
    return f"{x:.{digits}g}" if abs(x) < 10 ** digits else f"{x:,.0f}"


def _pct(x):
    return "–" if x is None else f"{100 * x:.0f} %"


def _mem(mem: dict, key: str) -> str:
    """Peak RSS with its rise over the start of the timed work, "812 (+305)"; the GPU pool as is."""
    peak = mem.get(key)
    if peak is None:
        return "–"
    if key == "rss_peak_mib" and mem.get("rss_base_mib") is not None:
        return f"{peak:,.0f} (+{max(peak - mem['rss_base_mib'], 0):,.0f})"
    return f"{peak:,.0f}"


def _ratio(summ):
    """The median ratio in bold, and the range over repeats when there are several."""
    if summ["ratio"] is None:
        return "–"
    r = summ["ratios"]
    spread = f" ({min(r):.2f}–{max(r):.2f})" if len(r) > 1 else ""
    return f"**{summ['ratio']:.2f}**{spread}"


def _libs(res):
    return ["minivae"] + (["torch"] if "torch" in res["meta"] else [])


def _mem_columns(res):
    gpu = res["meta"]["device"] == "gpu"
    return [("rss_peak_mib", "peak RSS, MiB")] + ([("pool_mib", "GPU pool, MiB")] if gpu else [])


def _table(head, rows):
    return (["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            + ["| " + " | ".join(r) + " |" for r in rows])


def dispatch_text(m) -> str:
    """The instruction set each library ran at: NumPy's dispatch level, PyTorch's capability."""
    level = (m.get("numpy_dispatch") or {}).get("level", "?")
    text = f"instruction set: --isa {m.get('isa', 'native')}, NumPy loops at {level}"
    if "torch" in m:
        text += f", PyTorch kernels at {m['torch'].get('cpu_capability', '?')}"
    return text


def busy_note(meta) -> list:
    """A warning line (and a blank one) where the load average at the start was above half the
    cores, else nothing."""
    load = meta["load_avg_start"][0]
    if meta["cpu_count"] and load > 0.5 * meta["cpu_count"]:
        return [f"> The machine was busy when the run started (load average {load:.1f} on "
                f"{meta['cpu_count']} cores): timings are unreliable.", ""]
    return []


def results_dir(repo, isa: str) -> str:
    """Where a run writes by default: benchmarks/results, or its subfolder for a non-native
    instruction set (results/avx2)."""
    return str(repo / "benchmarks" / "results" / ("" if isa == "native" else isa))


def header(res) -> list:
    m, thr, libs = res["meta"], res["throughput"], _libs(res)
    gpu = m["device"] == "gpu"
    title = ("minivae CuPy vs PyTorch CUDA" if gpu else "minivae NumPy vs PyTorch CPU")
    lines = [f"# {title}", ""]
    if m["quick"]:
        lines += ["> **--quick**: a few steps per workload, 1 repeat, a tiny log-likelihood run: "
                  "this checks the harness; the numbers mean nothing.", ""]
    lines += busy_note(m)
    hw = [f"{m['cpu']}, {m['cpu_count']} cores", f"NumPy {m['numpy']} ({m.get('blas') or 'BLAS ?'})"]
    if "torch" in m:
        t = m["torch"]
        hw.append(f"PyTorch {t['version']} (BLAS {t.get('blas')})")
    if gpu:
        g = m.get("minivae_gpu", {})
        hw.append(f"GPU {g.get('gpu')}, CuPy {g.get('cupy')}")
    n = m.get("threads", m["cpu_count"])
    hw.append(f"Python {m['python']}; both libraries on {n} thread{'' if n == 1 else 's'}")
    if not gpu:
        hw.append(dispatch_text(m))
    shapes = list(thr.get("shapes", {}).values())
    speed = f"{_s(thr.get('peak_2048'))} GFLOP/s at 2048³"
    if shapes:
        speed += f", {_s(min(shapes))}–{_s(max(shapes))} GFLOP/s at the workloads' layer shapes"
    if thr.get("torch_peak_2048"):
        speed += f"; PyTorch's 2048³: {_s(thr['torch_peak_2048'])} GFLOP/s"
    st = m["settings"]
    protocol = ("each run a fresh process; "
                + ("minivae and PyTorch alternate (minivae, PyTorch, minivae, ...), "
                   if len(libs) > 1 else "minivae only, ")
                + f"{st['repeats']} run(s) each ({st['ll_repeats']} for the log-likelihood); "
                "times are medians")
    if len(libs) > 1:
        protocol += ("; the ratio is the median over repeats of minivae / PyTorch from back-to-back "
                     "runs (below 1: minivae is faster), range in brackets")
    protocol += ("; the bound is the matrix-product FLOPs at the throughput measured for each "
                 "product's shape, and % of bound = bound / time.")
    lines += [f"- **Command:** `{m['command']}` ({m['date_utc']}, minivae {m.get('minivae_commit')})",
              f"- **Hardware:** {'; '.join(hw)}",
              f"- **Matrix products (float32, {'CuPy' if gpu else 'NumPy'} `a @ b`):** {speed}",
              f"- **Protocol:** {protocol}", ""]
    return lines + [line for note in res["notes"] for line in (f"> {note}", "")]


def workload_table(res) -> list:
    libs, mem_cols = _libs(res), _mem_columns(res)
    who = " / ".join(LIB_NAMES[x] for x in libs)
    head = ["workload", "measured", *[LIB_NAMES[x] for x in libs]]
    head += ["minivae / PyTorch"] if len(libs) > 1 else []
    head += ["GFLOP", "matmul bound", *[f"{LIB_NAMES[x]} % of bound" for x in libs],
             *[f"{title} ({who})" for _, title in mem_cols]]
    rows = []
    for e in res["workloads"]:
        row = [f"**{e['id']}** {e['label']}", e["measured"]]
        row += [f"{_s(e['median_s'][x])} {e['unit']}" if e["median_s"].get(x) is not None
                else "error" for x in libs]
        row += [_ratio(e)] if len(libs) > 1 else []
        row += [_s(e["flops"] / 1e9), f"{_s(e['bound_s'])} s" if e["bound_s"] else "–"]
        row += [_pct(e["fraction_of_bound"].get(x)) for x in libs]
        row += [" / ".join(_mem(e["memory"][x], key) for x in libs) for key, _ in mem_cols]
        rows.append(row)
    lines = _table(head, rows)
    for e in res["workloads"]:
        if e["kind"] == "loglik" and e.get("nll"):
            nll = ", ".join(f"{LIB_NAMES[x]} {v:.2f}" for x, v in e["nll"].items() if v is not None)
            lines += ["", f"Workload c at the same (untrained, Glorot) weights: test NLL {nll} nats "
                      "(the estimates differ only by their random draws)."]
    return lines


def sweep_table(res) -> list:
    if not res["step_sweep"]:
        return []
    libs, st = _libs(res), res["meta"]["settings"]
    lines = ["", "## d: one IWAE training step of the Burda model, by batch and k", "",
             f"Median of {st['sweep_steps']} steps after {st['sweep_warmup']} warm-up steps, each "
             "timed between two device syncs; dynamic binarisation, Adam ε = 1e-4.", ""]
    head = ["batch", "k", "MFLOP / step", "bound, ms", *[f"{LIB_NAMES[x]}, ms" for x in libs]]
    head += ["minivae / PyTorch"] if len(libs) > 1 else []
    head += [f"{LIB_NAMES[x]} % of bound" for x in libs]
    rows = []
    for r in res["step_sweep"]:
        row = [str(r["batch"]), str(r["k"]), _s(r["flops"] / 1e6),
               _s(r["bound_s"] * 1e3) if r["bound_s"] else "–"]
        row += [_s(r["median_s"][x] * 1e3) if r["median_s"].get(x) is not None else "error"
                for x in libs]
        row += [_ratio(r)] if len(libs) > 1 else []
        row += [_pct(r["fraction_of_bound"].get(x)) for x in libs]
        rows.append(row)
    lines += _table(head, rows)
    mem = res.get("step_sweep_memory", {})
    for key, title in _mem_columns(res) if mem else []:
        lines += ["", f"{title[0].upper() + title[1:]}, over the whole sweep: "
                  + ", ".join(f"{LIB_NAMES[x]} {_mem(mem[x], key)}" for x in libs) + "."]
    return lines


def footer(res) -> list:
    gpu = res["meta"]["device"] == "gpu"
    return ["", "FLOPs count matrix products only (2·N·I·O per dense layer forward, twice that "
            "backward, no dx for the encoder's input layer); the rest of a step's time is elementwise "
            "work, memory traffic and Python overhead. Peak RSS: the process's resident high-water "
            "mark during the timed work (data set and library included; VmHWM reset after "
            "loading), in brackets its rise over the resident set at the start of the timed work: "
            "what the workload itself allocates."
            + (" GPU pool: CuPy's pool size (it keeps what it grew to) and PyTorch's "
               "`max_memory_reserved`, data set included." if gpu else ""), ""]


def markdown(res: dict) -> str:
    return "\n".join(header(res) + workload_table(res) + sweep_table(res) + footer(res))


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        print(markdown(json.load(f)))
