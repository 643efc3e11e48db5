# The detection demo student trained alone (no distillation): the reference row of the table.
_base_ = ['./_base_/composite_detection.py', './_base_/composite_detection_models.py']
model = {{_base_.student_res18}}
