"""Command-line entry point of ``mmtkd.benchmark.step_memory`` (its docstring gives the usage)."""
from mmtkd.benchmark.step_memory import main

if __name__ == '__main__':
    main()
