"""The weightings the benchmarks compare: the heuristic baselines and the agent configuration
mmtkd recommends, as the benchmarks name and build them."""
import os.path as osp

from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
#: the heuristics every agent is compared with (paired by seed in quality.py, timed in speed.py)
BASELINE_WEIGHTINGS = {
    'aver': dict(type='mmtkd.AverageWeighting'),
    'camkd': dict(type='mmtkd.ConfidenceWeighting'),
    'ebkd': dict(type='mmtkd.EntropyWeighting'),
}
#: the recommended agent's method name in the benchmarks and in docs/results/agent_efficacy.json
RECOMMENDED = 'mtkd_rl_credit'
#: where it is defined (the shipped ``*_credit.py`` configs inherit it)
RECOMMENDED_CONFIG = osp.join(ROOT, 'configs', 'mtkd_rl', '_base_', 'credit_agent.py')


def recommended_weighting() -> dict:
    """The recommended weighting config, as a distiller's ``weighting`` argument.

    Returns:
        dict: The ``credit_agent`` of :data:`RECOMMENDED_CONFIG` (without the ``_delete_`` key
        that makes it replace an inherited weighting).
    """
    weighting = Config.fromfile(RECOMMENDED_CONFIG).credit_agent.to_dict()
    weighting.pop('_delete_', None)
    return weighting


def candidate_weightings() -> dict:
    """The recommended agent's variants under evaluation (docs/agent_behaviour.md, "The hinged
    credit"), as the quality and speed benchmarks name them.

    Returns:
        dict: ``{method name: weighting config}``.
    """
    hinged = dict(type='mmtkd.CreditUpdate', entropy_coef=0.02, epochs=2, scale='hinge')
    agreement = dict(type='mmtkd.TaskAgreementReward')
    return {
        # only a teacher whose mean agreement is negative loses credit (scale='hinge': a soft
        # teacher is not a bad one); on a detector the agreement is measured on the foreground
        # anchors only (where an untrained teacher's scores pull against the labels)
        'mtkd_rl_credit_hinge':
        dict(recommended_weighting(), reward=dict(agreement, region='foreground'), update=hinged),
        # the same on the assigned class's score of each foreground anchor only
        'mtkd_rl_credit_hinge_cls':
        dict(
            recommended_weighting(),
            reward=dict(agreement, region='foreground_class'),
            update=hinged),
        # the same with each foreground anchor's KD gradient compared with its class margin's
        # (the assigned class up, the others down, equally): a teacher that raises another
        # class on the object more than the right one loses credit from the first update,
        # which the focal loss's gradient (nearly zero on the other classes) cannot show
        'mtkd_rl_credit_hinge_margin':
        dict(
            recommended_weighting(),
            reward=dict(agreement, region='foreground', direction='class_margin'),
            update=hinged),
    }
