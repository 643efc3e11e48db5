"""Command-line entry point of ``mmtkd.benchmark.speed`` (its docstring gives the usage)."""
from mmtkd.benchmark.speed import main

if __name__ == '__main__':
    main()
