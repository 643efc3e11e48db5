"""Command-line entry point of ``mmtkd.analysis.digits_batch_one``
(its docstring gives the usage)."""
from mmtkd.analysis.digits_batch_one import main

if __name__ == '__main__':
    main()
