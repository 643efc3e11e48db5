"""Command-line entry point of ``mmtkd.benchmark.teacher_precision``
(its docstring gives the usage)."""
from mmtkd.benchmark.teacher_precision import main

if __name__ == '__main__':
    main()
