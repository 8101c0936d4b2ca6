"""The registry of unlearning methods: name -> loss class. ``retrain`` trains from scratch on D_r (the gold
standard) through the same loop; the trial handles it since it does not start from the base weights."""
from .dimum import DiMUM
from .erasediff import EraseDiff
from .esd import ESD
from .finetune import Finetune
from .ga import GradientAscent
from .sa import SelectiveAmnesia
from .salun import SalUn

REGISTRY = {
    "finetune": Finetune,
    "ga": GradientAscent,
    "salun": SalUn,
    "sa": SelectiveAmnesia,
    "esd": ESD,
    "erasediff": EraseDiff,
    "dimum": DiMUM,
    "retrain": None,
}
