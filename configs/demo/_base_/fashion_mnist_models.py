# Demo models for 28x28 grey images: three teachers of different architectures, a small student.
def _classifier(backbone, channels):
    return dict(
        type='ImageClassifier',
        backbone=backbone,
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=10, in_channels=channels,
                  loss=dict(type='CrossEntropyLoss', loss_weight=1.0), topk=(1, )))


teacher_res18 = _classifier(
    dict(type='ResNet', depth=18, in_channels=1, base_channels=32, out_indices=(3, )), 256)
teacher_res34 = _classifier(
    dict(type='ResNet', depth=34, in_channels=1, base_channels=16, out_indices=(3, )), 128)
teacher_regnetx = _classifier(
    dict(type='RegNet', arch='regnetx_400mf', in_channels=1, out_indices=(3, )), 384)
student_res18 = _classifier(
    dict(type='ResNet', depth=18, in_channels=1, base_channels=8, out_indices=(3, )), 64)
