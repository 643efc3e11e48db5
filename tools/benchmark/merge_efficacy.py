"""Command-line entry point of ``mmtkd.benchmark.merge_efficacy`` (its docstring: the usage)."""
from mmtkd.benchmark.merge_efficacy import main

if __name__ == '__main__':
    main()
