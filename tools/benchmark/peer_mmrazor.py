"""mmtkd side by side with MMRazor on the same single-teacher FPN distillation (CPU counts, peak
memory and wall-clock); see :mod:`mmtkd.benchmark.peer_mmrazor`."""
from mmtkd.benchmark.peer_mmrazor import main

if __name__ == '__main__':
    main()
