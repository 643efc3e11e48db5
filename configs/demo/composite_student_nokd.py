# The detection demo student trained alone (no distillation): the reference row of the table.
_base_ = ['./_base_/composite_detection.py', './_base_/composite_detection_models.py']
model = {{_base_.student_res18}}

# students train half as long as the teachers (4 epochs): the teachers know more than the
# student can learn alone in its budget, which is the setting distillation is for
train_cfg = dict(max_epochs=2, val_interval=2)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=2, T_max=2)
]
