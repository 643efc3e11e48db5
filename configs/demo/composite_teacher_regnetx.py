# Demo detection teacher trained on the composite set by tools/demo.py (cached in
# work_dirs/demo/teachers/).
_base_ = ['./_base_/composite_detection.py', './_base_/composite_detection_models.py']
model = {{_base_.teacher_regnetx}}
