"""raysweep: sweeps of machine unlearning for diffusion models, and the relearning attack that tests them."""
__version__ = "0.1.0"

from .config import RaysweepError  # noqa: E402,F401  (what experiments/*.py raise for a bad setup)
from .experiment import Experiment  # noqa: E402,F401  (what experiments/*.py build)
