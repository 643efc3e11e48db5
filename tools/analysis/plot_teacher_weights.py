"""Command-line entry point of ``mmtkd.analysis.plot_teacher_weights``
(its docstring gives the usage)."""
from mmtkd.analysis.plot_teacher_weights import main

if __name__ == '__main__':
    main()
