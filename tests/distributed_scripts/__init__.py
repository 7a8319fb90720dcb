"""Scripts tests/test_distributed.py launches on 2 ranks (mpiexec), and the cases they share."""
