# AVER baseline of the segmentation demo: the same teachers, every teacher weighs 1/M.
_base_ = ['./compseg_fcn_3teachers_mtkd_rl.py']
model = dict(weighting=dict(_delete_=True, type='mmtkd.AverageWeighting'))
