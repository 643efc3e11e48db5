# The tree-crown demo with the agent mmtkd recommends: the same teachers and student as the
# official MTKD-RL config, the weighting swapped for the shipped credit agent, no warm-up:
# per-teacher credit from the agreement of each teacher's KD gradient with the student's
# task (../mtkd_rl/_base_/credit_agent.py, what mmtkd recommends for detectors and classifiers).
_base_ = ['./trees_retina_3teachers_mtkd_rl.py', '../mtkd_rl/_base_/credit_agent.py']
model = dict(weighting={{_base_.credit_agent}})
