import os

from hypothesis import HealthCheck, settings

# 25 examples per property by default; MINIVAE_HYPOTHESIS=thorough for 300.  Under CI the
# examples are derandomized (the same every run), so a submission's result never depends on luck.
settings.register_profile("default", deadline=None, max_examples=25,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", deadline=None, max_examples=25, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", deadline=None, max_examples=300,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("MINIVAE_HYPOTHESIS", "ci" if os.environ.get("CI") else "default"))


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: runs on the CuPy backend; needs CuPy and a CUDA GPU")
    config.addinivalue_line("markers", "slow: trains a model for more than a few seconds")
