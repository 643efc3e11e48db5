# Baseline on the same teacher pool as configs/mtkd_rl/resnet18_3teachers_imagenet.py:
# EntropyWeighting.
_base_ = ['../mtkd_rl/resnet18_3teachers_imagenet.py']
model = dict(weighting=dict(_delete_=True, type='mmtkd.EntropyWeighting'))
