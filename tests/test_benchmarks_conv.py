"""benchmarks/conv.py: the PyTorch ConvVAE is minivae's ConvVAE, and the FLOPs counted from the layer
shapes are the products minivae computes.  No timing is asserted."""
import numpy as np
import pytest

from benchmarks import conv as bench
from minivae import conv as C
from minivae.conv_vae import ConvVAE

SMALL = dict(image_shape=(1, 8, 8), latent_dim=3, channels=(4, 6, 5), activation="relu",
             likelihood="bernoulli")


def small_model(seed=0, dtype="float64"):
    """A small ConvVAE with every parameter random (the zero-initialised convolutions and biases
    too, so that every path carries a gradient)."""
    model = ConvVAE(**SMALL, dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed + 1)
    model.load_params({n: 0.3 * rng.standard_normal(p.shape) for n, p in model.params.items()})
    return model


def test_torch_peer_gives_minivae_loss_and_gradients_float64():
    torch = pytest.importorskip("torch")
    from benchmarks.peer_torch_conv import TorchConvVAE

    model = small_model()
    net = TorchConvVAE.from_minivae(model, dtype=torch.float64)
    rng = np.random.default_rng(2)
    x = (rng.random((5, 64)) < 0.3).astype(np.float64)
    eps = rng.standard_normal((1, 5, 3))

    loss, grads, _ = model.loss_and_grads(x, "elbo", 1, eps=eps)
    loss_t = net.loss(torch.from_numpy(x), torch.from_numpy(eps), "elbo")
    loss_t.backward()
    np.testing.assert_allclose(loss_t.item(), float(loss), rtol=1e-12)
    grads_t = net.minivae_grads()
    assert sorted(grads_t) == sorted(grads) == sorted(model.params)
    for name, g in grads.items():
        assert np.abs(g).max() > 0, name                    # every path carries a gradient
        np.testing.assert_allclose(grads_t[name], g, rtol=0, atol=1e-10 * np.abs(g).max(),
                                   err_msg=name)
    # K = 4 samples through the decoder's leading axes: the same log-weights
    eps4 = rng.standard_normal((4, 5, 3))
    with torch.no_grad():
        log_w_t = net.log_weights(torch.from_numpy(x), torch.from_numpy(eps4)).numpy()
    np.testing.assert_allclose(log_w_t, model.log_weights(x, eps4), rtol=1e-12)


def test_torch_peer_takes_the_same_adam_step():
    torch = pytest.importorskip("torch")
    from benchmarks.peer_torch import make_adam, train_step
    from benchmarks.peer_torch_conv import TorchConvVAE
    from minivae.optim import Adam

    model = small_model(seed=3)
    net = TorchConvVAE.from_minivae(model, dtype=torch.float64)
    opt, opt_t = Adam(**bench.ADAM), make_adam(net, bench.ADAM["eps"], bench.ADAM["lr"])
    rng = np.random.default_rng(4)
    for _ in range(2):
        x = (rng.random((3, 64)) < 0.3).astype(np.float64)
        eps = rng.standard_normal((1, 3, 3))
        _, grads, _ = model.loss_and_grads(x, "elbo", 1, eps=eps)
        opt.step(model.params, grads)
        train_step(net, opt_t, torch.from_numpy(x), torch.from_numpy(eps), "elbo")
    after = TorchConvVAE.from_minivae(model, dtype=torch.float64)    # minivae's, in torch layout
    for a, b in zip(net.parameters(), after.parameters()):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=0, atol=1e-12)


def test_conv_flops_match_the_formula():
    # forward 2 N H_out W_out C_out C_in kh kw; dW and dx the same each; no dx for a first layer
    layer = C.Conv2d(3, 5, (3, 2), stride=2, padding=1)
    products, out = bench.layer_products(layer, (3, 9, 8), 7, True, "x")
    h_out, w_out = (9 + 2 - 3) // 2 + 1, (8 + 2 - 2) // 2 + 1
    assert out == (5, h_out, w_out)
    assert [p.kind for _, p in products] == ["fwd", "dW", "dx"]
    assert {p.flops for _, p in products} == {2 * 7 * h_out * w_out * 5 * 3 * 3 * 2}
    first, _ = bench.layer_products(layer, (3, 9, 8), 7, False, "x")
    assert [p.kind for _, p in first] == ["fwd", "dW"]
    # a ConvTranspose2d: every input pixel stamps the kernel, 2 N H W C_in C_out kh kw
    up = C.ConvTranspose2d(4, 2, 4, stride=2, padding=1)
    products, out = bench.layer_products(up, (4, 5, 6), 3, True, "y")
    assert out == (2, 10, 12)
    assert {p.flops for _, p in products} == {2 * 3 * 5 * 6 * 4 * 2 * 4 * 4}
    # the benchmarked 64 -> 64 3x3 at 14x14, N = 64
    case = next(c for c in bench.CONV_CASES if c[0] == "block-14")
    flops = sum(p.flops for _, p in bench.conv_case_products(case))
    assert flops == 3 * 2 * 64 * 14 * 14 * 64 * 64 * 9


def test_step_products_are_the_products_minivae_computes(monkeypatch):
    """Count minivae's convolution products during a training step, each by its FLOPs from the
    shapes it was called with: the same multiset as the plan's convolution products.  In
    particular the encoder's first convolution computes no dx (Sequential's need_dx=False)."""
    seen = []

    def conv2d_flops(x, W, s=1, p=0):          # y (N, W.shape[0], H_out, W_out), W[0].size taps each
        h, w = (C.conv_output_size(n, k, s, p) for n, k in zip(x.shape[2:], W.shape[2:]))
        return 2 * x.shape[0] * W.shape[0] * h * w * W[0].size

    def transpose_flops(dy, W, *_):             # every dy value times W[o]'s C_in kh kw taps
        return 2 * dy.size * W[0].size

    def weight_grad_flops(x, dy, kernel, *_):   # every dy value times C_in kh kw windowed inputs
        return 2 * dy.size * x.shape[1] * kernel[0] * kernel[1]

    depth = [0]                                # a product computed by another counts once
    for name, flops in (("conv2d", conv2d_flops), ("conv2d_transpose", transpose_flops),
                        ("conv2d_weight_grad", weight_grad_flops)):
        def spy(*a, _fn=getattr(C, name), _flops=flops):
            if depth[0] == 0:
                seen.append(_flops(*a))
            depth[0] += 1
            try:
                return _fn(*a)
            finally:
                depth[0] -= 1
        monkeypatch.setattr(C, name, spy)
    model = ConvVAE(**SMALL, dtype="float64", seed=0)
    B, K = 5, 2
    rng = np.random.default_rng(0)
    model.loss_and_grads((rng.random((B, 64)) < 0.3).astype(float), "elbo", K,
                         eps=rng.standard_normal((K, B, 3)))
    plan = bench.step_products(model, B, K)
    conv_plan = [p.flops for label, p in plan if "Conv" in label]
    assert sorted(seen) == sorted(conv_plan)
    first = [p.kind for label, p in plan if label.startswith("encoder.1 ")]
    assert first == ["fwd", "dW"]
    dense = [(label, p.kind, p.flops) for label, p in plan if "Dense" in label]
    n_flat = 5 * 2 * 2                                      # 5 channels at 2x2 after two halvings
    assert dense == [(f"encoder.{len(model.encoder.layers) - 1} Dense", kind, 2 * B * n_flat * 6)
                     for kind in ("fwd", "dW", "dx")] + [
                    ("decoder.0 Dense", kind, 2 * K * B * 3 * n_flat) for kind in ("fwd", "dW", "dx")]


def test_markdown_renders_a_results_file():
    rows = [{"label": "step", "measured": "median of 2 steps",
             "median_s": {"minivae": 0.5, "torch": 0.25},
             "ratios": [2.0, 2.2], "ratio": 2.1, "flops": 1.5e10, "bound_s": 0.1,
             "fraction_of_bound": {"minivae": 0.2, "torch": 0.4}, "products": []}]
    meta = {"quick": True, "load_avg_start": [0.1, 0.1, 0.1], "cpu_count": 2, "cpu": "CPU",
            "numpy": "2.0", "blas": "openblas",
            "torch": {"version": "2.13", "cpu_capability": "AVX2"},
            "threads": 2, "python": "3.12", "isa": "native", "numpy_dispatch": {"level": "X86_V3"},
            "minivae_commit": "abc+changes", "command": "python benchmarks/conv.py --quick",
            "date_utc": "today", "data": "synthetic",
            "settings": bench.settings(bench.parse_args(["--quick"]))}
    md = bench.markdown({"meta": meta, "throughput": {"peak_2048": 100.0, "shapes": {"a": 50.0}},
                         "rows": rows, "notes": []})
    row = "| step | median of 2 steps | 500 ms | 250 ms | **2.10** (2.00–2.20) | 15 | 100 ms | 20 % | 40 % |"
    assert row in md
    assert "dirty" in md and "X86_V3" in md and "AVX2" in md and "synthetic" in md


@pytest.mark.parametrize("lib", ["minivae", "torch"])
def test_child_tasks_time_a_step_and_the_convolutions(lib, tmp_path):
    if lib == "torch":
        torch = pytest.importorskip("torch")
        threads = torch.get_num_threads()             # leave the test process's setting alone
    else:
        threads = None
    spec = {"lib": lib, "steps": 1, "warmup": 0, "seed": 0, "threads": threads,
            "data_dir": str(tmp_path)}    # no MNIST there: $MINIVAE_DATA's, else random binary images
    step = bench.time_step(spec)
    assert step["median_s"] > 0 and len(step["times"]) == 1
    assert step["data"].startswith(("synthetic", "mnist"))
    assert np.isfinite(step["loss_first"])
    convs = bench.time_convs(spec)["cases"]
    assert sorted(convs) == sorted(c[0] for c in bench.CONV_CASES)
    assert all(c["median_s"] > 0 for c in convs.values())
