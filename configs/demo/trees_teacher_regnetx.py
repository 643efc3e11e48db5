# Tree-crown detection teacher trained by tools/demo.py --task trees (cached in
# work_dirs/demo/teachers/).
_base_ = ['./_base_/tree_crowns_detection.py', './_base_/tree_crowns_detection_models.py']
model = {{_base_.teacher_regnetx}}
