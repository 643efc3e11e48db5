"""Command-line entry point of ``mmtkd.benchmark.quality`` (its docstring gives the usage)."""
from mmtkd.benchmark.quality import main

if __name__ == '__main__':
    main()
