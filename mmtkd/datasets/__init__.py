"""Builders of the real-data sets the demo, benchmarks and tests use (``tools/data/*.py``):
composite detection, Fashion-MNIST, tree crowns."""
