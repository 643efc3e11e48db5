"""When will MMEngine's ``CheckpointHook`` save next? Read from the hooks' own schedule.

Under distributed training only rank 0 runs ``before_save_checkpoint``, so a hook whose state
differs between ranks must collect it from every rank *before* the save, while every rank is
still in the same hook call. :func:`checkpoint_may_follow` tells it when.
"""
from mmengine.hooks import CheckpointHook
from mmengine.runner import EpochBasedTrainLoop


def _validation_follows(runner, after: str) -> bool:
    loop = runner.train_loop
    if runner.val_loop is None:
        return False
    epoch_based = isinstance(loop, EpochBasedTrainLoop)
    if after == 'epoch' and epoch_based:
        done, last = runner.epoch + 1, loop.max_epochs
    elif after == 'iter' and not epoch_based:
        done, last = runner.iter + 1, loop.max_iters
    else:
        return False
    return done >= loop.val_begin and (done % loop.val_interval == 0 or done == last)


def checkpoint_may_follow(runner, after: str) -> bool:
    """Whether a ``CheckpointHook`` may save a checkpoint before the next training iteration.

    Call it from ``after_train_iter`` (``after='iter'``) or ``after_train_epoch``
    (``after='epoch'``) of a hook with a higher priority than ``CheckpointHook``.

    Args:
        runner (Runner): The runner.
        after (str): ``'iter'`` or ``'epoch'``.

    Returns:
        bool: True when a periodic, last or best checkpoint may be written.
    """
    for hook in runner.hooks:
        if not isinstance(hook, CheckpointHook):
            continue
        if after == 'iter' and not hook.by_epoch and (
                hook.every_n_train_iters(runner, hook.interval, hook.save_begin) or
            (hook.save_last and hook.is_last_train_iter(runner))):
            return True
        if after == 'epoch' and hook.by_epoch and (
                hook.every_n_epochs(runner, hook.interval, hook.save_begin) or
            (hook.save_last and hook.is_last_train_epoch(runner))):
            return True
        if hook.save_best is not None and _validation_follows(runner, after):
            return True
    return False
