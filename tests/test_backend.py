"""The backend module: selection by name, clear errors, and the array module following the arrays."""
import pathlib
import sys
import types

import numpy as np
import pytest

from minivae import backend as B
from tests.backends import BACKENDS


def test_numpy_backend_has_a_seeded_generator_and_host_copies():
    a, b = B.get_backend("numpy", seed=5), B.get_backend("numpy", seed=5)
    assert a.xp is np and a.name == "numpy"
    np.testing.assert_array_equal(a.rng.standard_normal(4), b.rng.standard_normal(4))
    x = a.asarray([1, 2])
    assert x.dtype == np.float32 and isinstance(a.to_host(x), np.ndarray)
    assert a.asarray([1], dtype=np.float64).dtype == np.float64
    a.synchronize()


@pytest.mark.parametrize("backend", BACKENDS)
def test_array_module_follows_the_arrays(backend):
    be = B.get_backend(backend)
    x = be.asarray(np.ones(3))
    assert B.array_module(x) is be.xp
    assert B.array_module(np.ones(2), x) is be.xp
    assert isinstance(B.to_host(x), np.ndarray)


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown backend 'jax': choose one of numpy, cupy"):
        B.get_backend("jax")


def test_missing_cupy_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)          # makes `import cupy` fail
    with pytest.raises(B.BackendUnavailable, match=r'not installed.*pip install "minivae\[gpu-cuda12\]"'):
        B.get_backend("cupy")
    assert not B.cupy_available()


def test_cupy_without_a_gpu_says_so(monkeypatch):
    def no_device():
        raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")
    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDeviceCount=no_device)))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    with pytest.raises(B.BackendUnavailable, match="no CUDA GPU is usable.*--backend numpy"):
        B.get_backend("cupy")
    fake.cuda.runtime.getDeviceCount = lambda: 0
    with pytest.raises(B.BackendUnavailable, match="sees no CUDA GPU"):
        B.get_backend("cupy")


def test_only_the_backend_module_imports_cupy():
    src = pathlib.Path(B.__file__).parent
    offenders = [p.name for p in src.rglob("*.py")
                 if p.name != "backend.py" and "import cupy" in p.read_text()]
    assert offenders == []


def test_no_autograd_framework_in_the_package():
    src = pathlib.Path(B.__file__).parent
    for p in src.rglob("*.py"):
        text = p.read_text()
        for name in ("torch", "jax", "autograd", "tensorflow"):
            assert f"import {name}" not in text and f"from {name}" not in text, (p.name, name)


def test_freed_memory_is_kept_for_reuse_on_glibc_and_never_fails_elsewhere():
    import platform
    from minivae import backend
    applied = backend.reuse_freed_memory()
    assert isinstance(applied, bool) and backend.reuse_freed_memory() == applied   # once
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert applied
