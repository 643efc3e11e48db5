# The headline detection recipe (retinanet_r18_3teachers.py) with the agent mmtkd recommends:
# per-teacher credit from KD / task gradient agreement (see ./README.md).
_base_ = ['./retinanet_r18_3teachers.py', './_base_/credit_agent.py']
model = dict(weighting={{_base_.credit_agent}})
