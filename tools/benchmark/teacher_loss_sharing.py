"""Command-line entry point of ``mmtkd.benchmark.teacher_loss_sharing``
(its docstring gives the usage)."""
from mmtkd.benchmark.teacher_loss_sharing import main

if __name__ == '__main__':
    main()
