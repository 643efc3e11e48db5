# The recommended credit agent (./credit_agent.py) with a credit of its own for each teacher's
# features (docs/agent_behaviour.md, "Per-teacher feature credit"): the feature-KD weights are
# learned from the agreement of each teacher's feature-KD gradient with the task loss's gradient
# at the student's features, the logit-KD weights stay on the logit agreement. The feature
# credit is ranked, not hinged (feature_scale='none'): a teacher whose features agree with the
# task more than another's gets more of the feature weight, even when both agree.
# The agreements cost one extra backward of the task loss through the student's head, so they
# are measured (and the step stored) one step in five (reward every=5), and each update passes
# ten times over its stored batches (epochs=10): as many policy steps as measuring every step
# with 2 passes. On the Cityscapes recipe's step: 1.014x AVER's kernels (1.063x every step);
# on the composite segmentation data level with every step (docs/agent_behaviour.md, "One step
# in five, five times the passes").
_base_ = ['./credit_agent.py']
credit_agent = dict(
    reward=dict(features=True, every=5), update=dict(feature_scale='none', epochs=10))
