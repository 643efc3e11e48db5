# The recommended credit agent (./credit_agent.py) with a credit of its own for each teacher's
# features (docs/agent_behaviour.md, "Per-teacher feature credit"): the feature-KD weights are
# learned from the agreement of each teacher's feature-KD gradient with the task loss's gradient
# at the student's features, the logit-KD weights stay on the logit agreement. The feature
# credit is ranked, not hinged (feature_scale='none'): a teacher whose features agree with the
# task more than another's gets more of the feature weight, even when both agree.
# Measured on the composite segmentation data only (see ../README.md); it costs one extra
# backward of the task loss through the student's head on the steps the agent stores.
_base_ = ['./credit_agent.py']
credit_agent = dict(reward=dict(features=True), update=dict(feature_scale='none'))
