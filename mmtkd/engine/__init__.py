"""Engine components: the agent's learning and the hooks that run it."""
from .agent import *  # noqa: F401,F403
from .hooks import *  # noqa: F401,F403
