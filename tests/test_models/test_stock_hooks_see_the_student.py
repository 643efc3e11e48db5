"""Stock hooks that reach into ``runner.model`` act on the student: mmdet's YOLOXModeSwitchHook
(the last epochs of every YOLOX recipe) switches the *student's* head to its L1 loss."""
from types import SimpleNamespace

import pytest
from mmdet.engine.hooks import YOLOXModeSwitchHook
from mmengine.logging import MMLogger
from mmengine.registry import MODELS

from mmtkd.testing import save_model_checkpoint, stock_model


def yolox_tiny():
    return stock_model('mmdet::yolox/yolox_tiny_8xb8-300e_coco.py')


def test_yolox_mode_switch_reaches_the_students_head(tmp_path):
    path = save_model_checkpoint(yolox_tiny(), str(tmp_path / 'teacher.pth'))
    distiller = MODELS.build(
        dict(
            type='mmtkd.MultiTeacherDistiller',
            student=yolox_tiny(),
            teachers=dict(t=dict(config=yolox_tiny(), checkpoint=path)),
            probe_input_shape=(3, 64, 64)))
    skipped = []
    runner = SimpleNamespace(
        epoch=284,
        max_epochs=300,
        model=distiller,
        logger=MMLogger.get_current_instance(),
        train_dataloader=SimpleNamespace(
            persistent_workers=False,
            dataset=SimpleNamespace(update_skip_type_keys=skipped.extend)))
    assert distiller.student.bbox_head.use_l1 is False
    YOLOXModeSwitchHook(num_last_epochs=15).before_train_epoch(runner)
    assert distiller.student.bbox_head.use_l1 is True
    assert distiller.teachers['t'].bbox_head.use_l1 is False  # teachers only teach
    assert skipped == ['Mosaic', 'RandomAffine', 'MixUp']
    with pytest.raises(AttributeError, match="no attribute 'neck_of_a_kind', nor has its student"):
        distiller.neck_of_a_kind
