"""Command-line entry point of ``mmtkd.datasets.fashion_mnist`` (its docstring gives the usage)."""
from mmtkd.datasets.fashion_mnist import main

if __name__ == '__main__':
    main()
