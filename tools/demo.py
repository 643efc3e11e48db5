"""Command-line entry point of ``mmtkd.demo.run`` (its docstring gives the usage)."""
from mmtkd.demo.run import main

if __name__ == '__main__':
    main()
