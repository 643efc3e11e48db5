"""Command-line entry point of ``mmtkd.datasets.tree_crowns`` (its docstring gives the usage)."""
from mmtkd.datasets.tree_crowns import main

if __name__ == '__main__':
    main()
