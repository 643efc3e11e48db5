# AVER baseline of the detection demo: the same teachers, every teacher weighs 1/M.
_base_ = ['./composite_retina_3teachers_mtkd_rl.py']
model = dict(weighting=dict(_delete_=True, type='mmtkd.AverageWeighting'))
