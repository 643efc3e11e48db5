# AVER baseline (every teacher weighs 1/M) on the same teacher pool as the MTKD-RL config.
_base_ = ['../mtkd_rl/resnet18_3teachers_imagenet.py']
model = dict(weighting=dict(_delete_=True, type='mmtkd.AverageWeighting'))
