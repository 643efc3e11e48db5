# The Cityscapes recipe (deeplabv3_r18-d8_3teachers_cityscapes.py) with the recommended credit
# agent and a ranked credit for each teacher's features (see ./README.md).
_base_ = ['./deeplabv3_r18-d8_3teachers_cityscapes.py', './_base_/feature_credit_agent.py']
model = dict(weighting={{_base_.credit_agent}})
