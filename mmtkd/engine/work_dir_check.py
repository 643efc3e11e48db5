"""Say so when a new run writes into a work dir that holds an earlier run's checkpoints."""
import glob
import os.path as osp
import warnings


def warn_if_work_dir_holds_a_run(runner) -> None:
    """Warn when a run that does not resume finds checkpoints in its work dir.

    MMEngine writes ``epoch_N.pth`` / ``iter_N.pth`` and ``last_checkpoint`` into the work dir
    whatever is there: the earlier run's files with the same names are overwritten, the others
    stay, and ``last_checkpoint`` (what ``--resume`` picks) then points into the new run.

    Args:
        runner (Runner): The runner, before training starts.
    """
    if runner._resume:
        return
    found = sorted(osp.basename(p) for p in glob.glob(osp.join(runner.work_dir, '*.pth')))
    if osp.isfile(osp.join(runner.work_dir, 'last_checkpoint')):
        found.append('last_checkpoint')
    if not found:
        return
    shown = ', '.join(found[:5]) + (', ...' if len(found) > 5 else '')
    warnings.warn(
        f'work_dir {runner.work_dir} already holds an earlier run ({shown}); this run is not '
        'resuming it, so checkpoints with the same names and last_checkpoint will be '
        'overwritten and the two runs\' checkpoints mixed. Use another --work-dir, or --resume '
        'to continue the earlier run.',
        stacklevel=2)
