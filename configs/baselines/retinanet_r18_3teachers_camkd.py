# Baseline on the same teacher pool as configs/mtkd_rl/retinanet_r18_3teachers.py:
# ConfidenceWeighting.
_base_ = ['../mtkd_rl/retinanet_r18_3teachers.py']
model = dict(weighting=dict(_delete_=True, type='mmtkd.ConfidenceWeighting'))
