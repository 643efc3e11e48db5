"""One warm-up schedule for every weighting strategy that has one, read from the runner.

MMEngine's ``RuntimeInfoHook`` writes the current epoch and iteration into the ``MessageHub``
before every training iteration; a weighting reads them here instead of being told by a hook,
so a resumed run continues the schedule and no strategy needs the engine to act.
"""
from typing import Optional

from mmengine.logging import MessageHub


class WarmupSchedule:
    """The first ``epochs`` epochs, or the first ``iters`` iterations, of training.

    Args:
        epochs (int): Warm-up epochs (epoch-based loops). Defaults to 0.
        iters (int, optional): Warm-up iterations instead (iteration-based loops); when given,
            ``epochs`` is ignored.
    """

    def __init__(self, epochs: int = 0, iters: Optional[int] = None) -> None:
        for name, value in (('warmup_epochs', epochs), ('warmup_iters', iters)):
            if value is not None and value < 0:
                raise ValueError(f'{name} must be >= 0, got {value}')
        self.epochs, self.iters = epochs, iters

    @property
    def active(self) -> bool:
        """Whether the runner's current iteration is in the warm-up (before a runner has
        written any progress: the first iteration, so yes if there is a warm-up)."""
        hub = MessageHub.get_current_instance()
        if self.iters is not None:
            return hub.get_info('iter', 0) < self.iters
        return hub.get_info('epoch', 0) < self.epochs
