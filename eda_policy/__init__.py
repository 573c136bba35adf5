"""eda-policy: Efficient Diffusion Alignment policies for Gymnasium control.

    >>> from eda_policy import EDAPolicy
    >>> policy = EDAPolicy.from_pretrained("checkpoints/hopper-medium-replay")
    >>> action = policy.act(obs)
"""

from .config import FORMAT_VERSION, CheckpointFormatError, EDAConfig
from .evaluation import EvaluationResult, evaluate_policy, record_video
from .policy import EDAPolicy
from .schedule import VPSchedule
from .sampler import dpm_solver_pp

__version__ = "0.1.0"

__all__ = [
    "EDAConfig",
    "EDAPolicy",
    "CheckpointFormatError",
    "FORMAT_VERSION",
    "EvaluationResult",
    "evaluate_policy",
    "record_video",
    "VPSchedule",
    "dpm_solver_pp",
    "__version__",
]
