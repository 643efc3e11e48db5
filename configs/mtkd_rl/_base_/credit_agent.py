# The agent mmtkd recommends (docs/agent_behaviour.md, "The credit agent" and "Agreement on the
# class margin"): per-teacher credit from the agreement of each teacher's KD gradient with the
# student's own task, per sample, learned by a full-information policy gradient into one weight
# per teacher (constant state: per-sample weights from the compact state cost the student,
# measured); no warm-up, no heuristic mixing, deterministic weights, an update every 10
# iterations.
# - hinged credit: only a teacher whose mean agreement is negative loses weight, so a soft
#   (dark-knowledge) teacher is not ranked below a sharp one;
# - on a detector the agreement is measured on the anchors assigned to an object, against the
#   gradient of their class margin (a teacher that raises another class on an object more than
#   the right one pulls against it); classifiers and segmentors use their task loss's gradient.
credit_agent = dict(
    _delete_=True,  # replaces an inherited weighting
    type='mmtkd.MTKDRLWeighting',
    update=dict(type='mmtkd.CreditUpdate', entropy_coef=0.02, epochs=2, scale='hinge'),
    reward=dict(type='mmtkd.TaskAgreementReward', region='foreground', direction='class_margin'),
    state='constant',
    mixing='none',
    warmup_iters=0,
    interval=10)
