# Tree-crown detection on CPU: real aerial photos from the PyPI wheel deepforest==2.1.0, cut into
# 400x400 tiles with one class ('tree', crowns of 16-70 px). Data, schedule and runtime shared by
# the tree-crown configs; everything not restated here (optimiser, hooks, runtime) comes from
# the composite set's base.
# Data: `python tools/data/build_tree_crowns.py` (writes COCO json under data/tree_crowns).
_base_ = ['./composite_detection.py']

data_root = 'data/tree_crowns/'
metainfo = dict(classes=('tree', ))
backend_args = None
# 43 training tiles: random 256x256 crops and all eight flips / transposes of an aerial view
# multiply them, and train 2.4x cheaper than full tiles; tests see whole 400x400 tiles
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomCrop', crop_size=(256, 256), allow_negative_crop=False),
    dict(type='RandomFlip', prob=[0.25, 0.25, 0.25],
         direction=['horizontal', 'vertical', 'diagonal']),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    # a no-op on the tiles (none is larger than 400), it records the scale factor
    dict(type='Resize', scale=(400, 400), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
train_dataloader = dict(
    batch_size=8,
    dataset=dict(data_root=data_root, metainfo=metainfo, data_prefix=dict(img='images/'),
                 filter_cfg=dict(filter_empty_gt=True, min_size=4), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=10,
    dataset=dict(data_root=data_root, metainfo=metainfo, data_prefix=dict(img='images/'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/val.json')
test_evaluator = val_evaluator

# 5 iterations per epoch: long schedules in epochs, a short warm-up in iterations
max_epochs = 150
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=30),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, T_max=max_epochs)
]
default_hooks = dict(logger=dict(type='LoggerHook', interval=5),
                     checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=1))
