# Baseline on the same teacher pool as configs/mtkd_rl/dino-4scale_r18_3teachers_coco.py:
# ConfidenceWeighting.
_base_ = ['../mtkd_rl/dino-4scale_r18_3teachers_coco.py']
model = dict(weighting=dict(_delete_=True, type='mmtkd.ConfidenceWeighting'))
