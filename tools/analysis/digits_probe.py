"""Command-line entry point of ``mmtkd.analysis.digits_report`` (its docstring gives the usage)."""
from mmtkd.analysis.digits_report import main

if __name__ == '__main__':
    main()
