"""Command-line entry point of ``mmtkd.analysis.dense_state_probe`` (its docstring gives the
usage)."""
from mmtkd.analysis.dense_state_probe import main

if __name__ == '__main__':
    main()
