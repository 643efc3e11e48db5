# The segmentation demo with the agent mmtkd recommends: the same teachers and student as the
# official MTKD-RL config, the weighting swapped for the shipped credit agent, no warm-up:
# per-teacher credit for the logits and, on their own, for each teacher's features
# (../mtkd_rl/_base_/feature_credit_agent.py, what mmtkd recommends for segmentors).
_base_ = ['./compseg_fcn_3teachers_mtkd_rl.py', '../mtkd_rl/_base_/feature_credit_agent.py']
model = dict(weighting={{_base_.credit_agent}})
