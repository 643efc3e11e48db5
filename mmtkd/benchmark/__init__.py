"""Benchmarks behind ``tools/benchmark/*.py``: speed, kernel and synchronisation counts, step
memory, quality over seeds, teacher precision, teacher-loss sharing, replay-buffer memory. They
read the configs of the repository (an editable install, as ``tools/install.sh`` makes)."""
