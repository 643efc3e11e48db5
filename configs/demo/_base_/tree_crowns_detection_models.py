# The composite set's RetinaNets (same backbones, FPN strides 8 / 16 / 32 and anchors of
# 16-90 px, which fit tree crowns of 16-70 px) with one class: 'tree'.
_base_ = ['./composite_detection_models.py']
teacher_res34 = dict(bbox_head=dict(num_classes=1))
teacher_res18 = dict(bbox_head=dict(num_classes=1))
teacher_regnetx = dict(bbox_head=dict(num_classes=1))
student_res18 = dict(bbox_head=dict(num_classes=1))
