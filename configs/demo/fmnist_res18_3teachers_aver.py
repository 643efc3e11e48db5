# AVER baseline of the demo: the same teachers, every teacher weighs 1/M.
_base_ = ['./fmnist_res18_3teachers_mtkd_rl.py']
model = dict(weighting=dict(_delete_=True, type='mmtkd.AverageWeighting'))
