"""Command-line entry point of ``mmtkd.benchmark.host_ops`` (its docstring gives the usage)."""
from mmtkd.benchmark.host_ops import main

if __name__ == '__main__':
    main()
