"""Command-line entry point of ``mmtkd.datasets.composite`` (its docstring gives the usage)."""
from mmtkd.datasets.composite import main

if __name__ == '__main__':
    main()
