"""Command-line entry point of ``mmtkd.benchmark.efficacy_table`` (its docstring: the usage)."""
from mmtkd.benchmark.efficacy_table import main

if __name__ == '__main__':
    main()
