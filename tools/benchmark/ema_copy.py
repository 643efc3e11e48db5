"""Command-line entry point of ``mmtkd.benchmark.ema_copy`` (its docstring gives the usage)."""
from mmtkd.benchmark.ema_copy import main

if __name__ == '__main__':
    main()
