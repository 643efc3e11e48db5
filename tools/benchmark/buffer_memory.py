"""Command-line entry point of ``mmtkd.benchmark.buffer_memory`` (its docstring gives the usage)."""
from mmtkd.benchmark.buffer_memory import main

if __name__ == '__main__':
    main()
