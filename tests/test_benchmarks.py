"""The benchmark harness: the PyTorch peer is the same model as minivae, and run.py writes its report.

No timing is asserted anywhere: the smoke test only checks that results.json and results.md appear
with the expected structure.
"""
import json
import subprocess
import sys

import numpy as np
import pytest

from benchmarks.workloads import BY_ID, N_TRAIN, flops_and_bound, plan
from tests.realdata import REPO, data_root, mnist


def test_flop_count_of_the_pytorch_examples_vae_matches_the_reference():
    # 784-400-20: forward 2(784*400 + 400*40 + 20*400 + 400*784), backward twice that less the
    # encoder input layer's dx: about 3.3 MFLOP per example per step (docs/reference.md).
    flops, bound = flops_and_bound(plan(BY_ID["a"]), {})
    per_example = flops / N_TRAIN
    mac = 784 * 400 + 400 * 40 + 20 * 400 + 400 * 784
    assert per_example == 6 * mac - 2 * 784 * 400 == 3_280_000
    assert bound is None                                # no throughput measured: no bound
    speed = {p.key: 100.0 for products, _ in plan(BY_ID["a"]) for p in products}
    assert flops_and_bound(plan(BY_ID["a"]), speed)[1] == pytest.approx(flops / 100e9)


CASES = [("examples", "elbo", 1, False),    # workload a: grey levels, analytic KL
         ("burda", "iwae", 50, True)]        # workload b, k = 50: binary pixels, IWAE bound


@pytest.mark.parametrize("model_name, objective, k, binary", CASES)
def test_torch_peer_gives_minivae_loss_and_gradients(model_name, objective, k, binary):
    torch = pytest.importorskip("torch")
    from benchmarks.peer_torch import TorchVAE
    from benchmarks.runners import make_minivae_model

    model = make_minivae_model(model_name, "numpy", seed=3)
    net = TorchVAE.from_minivae(model)
    rng = np.random.default_rng(1)
    x = rng.random((16, 784), dtype=np.float32)
    if binary:
        x = (x < 0.3).astype(np.float32)
    eps = rng.standard_normal((k, 16, model.latent_dim), dtype=np.float32)

    loss, grads, _ = model.loss_and_grads(x, objective, k, eps=eps)
    loss_t = net.loss(torch.from_numpy(x), torch.from_numpy(eps), objective)
    loss_t.backward()
    np.testing.assert_allclose(loss_t.detach().item(), float(loss), rtol=1e-5)
    grads_t = net.minivae_grads()
    assert sorted(grads_t) == sorted(grads)
    for name, g in grads.items():                      # float32: relative to the largest entry
        np.testing.assert_allclose(grads_t[name], g, rtol=0, atol=1e-4 * np.abs(g).max(),
                                   err_msg=name)
    # the evaluator's log-weights, same eps: the same numbers
    log_w = model.log_weights(x, eps)
    with torch.no_grad():
        log_w_t = net.log_weights(torch.from_numpy(x), torch.from_numpy(eps)).numpy()
    np.testing.assert_allclose(log_w_t, log_w, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("eps", [1e-8, 1e-4])
def test_torch_adam_takes_minivae_adam_steps(eps):
    torch = pytest.importorskip("torch")
    from benchmarks.peer_torch import TorchVAE, make_adam
    from benchmarks.runners import make_minivae_model
    from minivae.optim import Adam

    model = make_minivae_model("examples", "numpy", seed=0)
    net = TorchVAE.from_minivae(model)
    opt, opt_t = Adam(lr=1e-3, eps=eps), make_adam(net, eps)
    rng = np.random.default_rng(2)
    for _ in range(3):                                 # the same gradients into both optimizers
        grads = {n: rng.standard_normal(p.shape).astype(np.float32) * 1e-3
                 for n, p in model.params.items()}
        opt.step(model.params, grads)
        for name, seq in (("encoder", net.encoder), ("decoder", net.decoder)):
            lins = [m for m in seq if isinstance(m, torch.nn.Linear)]
            for i, lin in enumerate(lins):
                lin.weight.grad = torch.from_numpy(np.ascontiguousarray(grads[f"{name}.{i}.W"].T))
                lin.bias.grad = torch.from_numpy(grads[f"{name}.{i}.b"])
        opt_t.step()
    check = TorchVAE.from_minivae(model)               # minivae's parameters, in torch layout
    for a, b in zip(net.parameters(), check.parameters()):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=0, atol=1e-6)


def test_quick_run_writes_json_and_markdown(tmp_path):
    if data_root() is None:
        mnist()                                        # skips, or fails under CI
    out = tmp_path / "results"
    cmd = [sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--only-minivae",
           "--only", "a,c,d", "--grid", "20x1,20x5", "--out", str(out), "--data-dir", str(data_root()),
           "--isa", "avx2"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]

    res = json.loads((out / "results.json").read_text())
    assert {"meta", "throughput", "workloads", "step_sweep", "notes"} <= set(res)
    assert res["meta"]["quick"] and res["meta"]["cpu_count"] >= 1 and res["meta"]["numpy"]
    assert res["meta"]["cpu"] and res["meta"]["minivae_commit"]
    # --isa avx2: NumPy's AVX-512 targets are off in every child, and the results say so
    assert res["meta"]["isa"] == "avx2" and res["meta"]["isa_env"]["ATEN_CPU_CAPABILITY"] == "avx2"
    dispatch = res["meta"]["numpy_dispatch"]
    assert not any(on for f, on in dispatch["targets"].items()
                   if f == "X86_V4" or f.startswith("AVX512"))
    assert dispatch["level"] != "X86_V4" and not dispatch["level"].startswith("AVX512")
    assert res["throughput"]["peak_2048"] > 0 and res["throughput"]["shapes"]
    assert [w["id"] for w in res["workloads"]] == ["a", "c"]
    for w in res["workloads"]:
        assert {"median_s", "ratio", "flops", "bound_s", "fraction_of_bound", "memory", "runs",
                "measured", "unit"} <= set(w)
        assert w["median_s"]["minivae"] > 0 and w["flops"] > 0
        assert w["memory"]["minivae"]["rss_peak_mib"] > 0
        assert "torch" not in w["runs"]
    assert [(r["batch"], r["k"]) for r in res["step_sweep"]] == [(20, 1), (20, 5)]
    md = (out / "results.md").read_text()
    assert "| workload |" in md and "## d:" in md and "--quick" in md and "PyTorch skipped" in md
    assert f"--isa avx2, NumPy loops at {dispatch['level']}" in md


def test_isa_native_changes_nothing_and_avx2_turns_off_every_avx512_target():
    from benchmarks.measure import numpy_dispatch
    from benchmarks.run import isa_env
    assert isa_env("native") == {}
    env = isa_env("avx2")
    off = set(env["NPY_DISABLE_CPU_FEATURES"].split())
    assert off == {f for f in numpy_dispatch()["targets"] if f == "X86_V4" or f.startswith("AVX512")}
    assert env["ATEN_CPU_CAPABILITY"] == "avx2" and env["OPENBLAS_CORETYPE"] == "Haswell"


def test_breakdown_reports_where_the_time_goes_in_both_configurations(tmp_path):
    if data_root() is None:
        mnist()                                        # skips, or fails under CI
    cmd = [sys.executable, str(REPO / "benchmarks" / "breakdown.py"), "--only", "b20,c", "--reps", "1",
           "--data-dir", str(data_root()), "--out", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = json.loads((tmp_path / "breakdown.json").read_text())
    assert [(r["workload"], r["config"]) for r in rows] == [
        ("b20", "1 thread"), ("b20", "shares"), ("c", "1 thread"), ("c", "shares")]
    for r in rows:
        parts = r["parts_ms"]
        assert r["wall_ms"] > 0 and parts["Dense"] > 0 and parts["Bernoulli"] > 0
        assert parts["draws"] > 0 and (parts["Adam"] > 0) == (r["workload"] != "c")
    assert rows[0]["threads"] == 1
    assert "| b20 | shares |" in (tmp_path / "breakdown.md").read_text()
