"""minivae against PyTorch: the benchmark harness (``python benchmarks/run.py``; see README.md here)."""
