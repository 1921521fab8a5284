"""The quantization scheme: what each layer's formats are (policies, format resolution) and how its
operations are counted (conventions). Torch-free: the cost model and a sweep worker use it without torch.
"""

from .conventions import CONVENTIONS, PAPER_CONVENTIONS
from .formats import QuantFormat, quant_format
from .policies import FULL, POLICIES, Policy, PolicyRule, get_policy
from .resolve import LayerScheme, add_policy_layers, attention_format, resolve

__all__ = [
    "CONVENTIONS", "FULL", "PAPER_CONVENTIONS", "POLICIES", "LayerScheme", "Policy", "PolicyRule", "QuantFormat",
    "add_policy_layers", "attention_format", "get_policy", "quant_format", "resolve",
]
