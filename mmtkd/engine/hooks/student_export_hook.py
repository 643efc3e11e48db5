"""Write a student-only checkpoint next to every checkpoint MMEngine saves."""
import glob
import os
import os.path as osp
from typing import Dict, Optional, Set

from mmengine.dist import master_only
from mmengine.hooks import Hook

from mmtkd.registry import HOOKS
from mmtkd.utils import extract_student, save_atomically

SUFFIX = '_student.pth'


@HOOKS.register_module()
class StudentExportHook(Hook):
    """After ``CheckpointHook`` (best checkpoints included), save ``<name>_student.pth``: the
    student's weights only, loadable by the stock student config and its own tools.

    The student weights are taken from the checkpoint dict being saved (no re-read from disk).
    Exports whose full checkpoint ``CheckpointHook`` later removed (``max_keep_ckpts``) are
    removed too; files this hook did not write are never touched.

    Args:
        out_dir (str, optional): Folder holding the checkpoints. Defaults to the work dir.
    """

    priority = 'LOWEST'  # after CheckpointHook (VERY_LOW)

    def __init__(self, out_dir: Optional[str] = None) -> None:
        self.out_dir = out_dir
        self._pending: Optional[Dict] = None
        self._exported: Set[str] = set()
        self._seen: Dict[str, float] = {}

    def before_run(self, runner) -> None:
        self.out_dir = self.out_dir or runner.work_dir
        self._seen = self._checkpoints()

    def _checkpoints(self) -> Dict[str, float]:
        paths = glob.glob(osp.join(self.out_dir, '*.pth'))
        return {p: osp.getmtime(p) for p in paths if not p.endswith(SUFFIX)}

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        self._pending = checkpoint

    @master_only
    def _sync(self, runner) -> None:
        current = self._checkpoints()
        new = [p for p, mtime in current.items() if self._seen.get(p) != mtime]
        if new and self._pending is not None:
            student = extract_student(self._pending)
            for path in new:
                target = path[:-len('.pth')] + SUFFIX
                save_atomically(student, target)
                self._exported.add(target)
                runner.logger.info(f'student-only checkpoint saved to {target}')
        for target in sorted(self._exported):
            if target[:-len(SUFFIX)] + '.pth' not in current and osp.exists(target):
                os.remove(target)
                self._exported.discard(target)
        self._seen = current
        self._pending = None

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self._pending is not None:
            self._sync(runner)

    def after_train_epoch(self, runner) -> None:
        self._sync(runner)

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._sync(runner)

    def after_train(self, runner) -> None:
        self._sync(runner)
