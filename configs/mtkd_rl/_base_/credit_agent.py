# The agent mmtkd recommends (docs/agent_behaviour.md, "The credit agent"): per-teacher credit
# from the agreement of each teacher's KD gradient with the student's task gradient, per
# sample, learned by a full-information policy gradient into one weight per teacher (constant
# state: per-sample weights from the compact state cost the student, measured); no warm-up, no
# heuristic mixing, deterministic weights, an update every 10 iterations.
credit_agent = dict(
    _delete_=True,  # replaces an inherited weighting
    type='mmtkd.MTKDRLWeighting',
    update=dict(type='mmtkd.CreditUpdate', entropy_coef=0.5, epochs=2),
    reward='agreement',
    state='constant',
    mixing='none',
    warmup_iters=0,
    interval=10)
