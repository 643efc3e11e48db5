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
