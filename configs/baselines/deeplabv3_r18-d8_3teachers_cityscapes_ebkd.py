# Baseline on the same teacher pool as configs/mtkd_rl/deeplabv3_r18-d8_3teachers_cityscapes.py:
# EntropyWeighting.
_base_ = ['../mtkd_rl/deeplabv3_r18-d8_3teachers_cityscapes.py']
model = dict(weighting=dict(_delete_=True, type='mmtkd.EntropyWeighting'))
