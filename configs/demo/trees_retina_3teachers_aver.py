# AVER baseline of the tree-crown demo: the same teachers, every teacher weighs 1/M.
_base_ = ['./trees_retina_3teachers_mtkd_rl.py']
model = dict(weighting=dict(_delete_=True, type='mmtkd.AverageWeighting'))
