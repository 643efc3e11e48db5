# The ImageNet recipe (resnet18_3teachers_imagenet.py) with the agent mmtkd recommends:
# per-teacher credit from KD / task gradient agreement (see ./README.md).
_base_ = ['./resnet18_3teachers_imagenet.py', './_base_/credit_agent.py']
model = dict(weighting={{_base_.credit_agent}})
