# Baseline on the same teacher pool as configs/mtkd_rl/faster-rcnn_r50_3teachers_coco.py:
# AverageWeighting.
_base_ = ['../mtkd_rl/faster-rcnn_r50_3teachers_coco.py']
model = dict(weighting=dict(_delete_=True, type='mmtkd.AverageWeighting'))
