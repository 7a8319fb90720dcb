"""The backends every backend-aware test runs on: NumPy, and CuPy (marked gpu) where it sees a GPU.

    @pytest.mark.parametrize("backend", BACKENDS)       # a test on every backend
    @needs_gpu                                          # a test that only makes sense on a GPU
"""
import pytest

from minivae.backend import cupy_available

HAS_GPU = cupy_available()

needs_gpu = pytest.mark.skipif(not HAS_GPU, reason="needs CuPy and a GPU")

BACKENDS = ["numpy", pytest.param("cupy", marks=[pytest.mark.gpu, needs_gpu])]
