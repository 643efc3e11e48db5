# The tree-crown student trained alone (no distillation): the reference row of the table.
_base_ = ['./_base_/tree_crowns_detection.py', './_base_/tree_crowns_detection_models.py']
model = {{_base_.student_res18}}

# students train 40 epochs, under a third of the teachers' 150 (the composite demo: half): the
# teachers know more than the student can learn alone in its budget
train_cfg = dict(max_epochs=40, val_interval=40)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=30),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=40, T_max=40)
]
