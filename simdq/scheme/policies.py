"""Named layer policies: which conv/linear layers a paper keeps at other precisions, as published and as
its released code does (docs/papers.md).

A policy is an ordered list of rules (first match wins, after the user's own rules). A rule's weights and
activations are a format name, FULL (the model's own precision) or None (keep the scheme's format).
count_ops=False keeps a layer in the size but leaves its MACs out of BOPs/FLOPs/OPs under the papers'
conventions, as BiDM's table does with the skip convs. extra_shortcuts adds BiDM's full-precision 1x1
shortcut conv beside every binarized conv whose channel counts differ; scale_path adds, beside every conv
with binary weights and activations, BiDM's activation scale (util_ours.py BNNConv2d: the channel mean of |x|,
a learnable k x k 1 -> 1 conv on that map, the conv's output times it; XNOR-Net's K). The weights' own
per-channel alpha is the binary GEMM's epilogue, as in any binary conv.
"""

from __future__ import annotations

from dataclasses import dataclass

from diagnostics import unknown

FULL = "full"

TIME_EMBEDDING = ("time_embedding.*", "add_embedding.*", "class_embedding.*")
FIRST_LAST = ("conv_in", "conv_out")
SKIP_CONVS = ("*.conv_shortcut",)
DOWNSAMPLE_CONVS = ("*.downsamplers.*",)
ATTENTION_PROJECTIONS = ("*.to_q", "*.to_k", "*.to_v", "*.to_out.*", "*.proj_in", "*.proj_out")


@dataclass(frozen=True)
class PolicyRule:
    match: tuple
    weights: object = None
    activations: object = None
    count_ops: bool = True
    why: str = ""


@dataclass(frozen=True)
class Policy:
    name: str
    description: str
    rules: tuple = ()
    extra_shortcuts: bool = False
    scale_path: bool = False


_FP_ENDS = PolicyRule(TIME_EMBEDDING + FIRST_LAST, FULL, FULL,
                      why="time embedding, first and last conv at full precision (released code)")

POLICIES = {
    policy.name: policy
    for policy in (
        Policy("all-quantized", "every conv and linear layer at the scheme's formats"),
        Policy("binarydm", "BinaryDM's released code: time-embedding linears, first and last conv at full "
               "precision; everything else quantized (also how BinaryDM's Table 5 prices its W4A4 rows)",
               (_FP_ENDS,)),
        Policy("bidm-as-published", "BiDM's Table 4: as binarydm, but the ResBlock skip convs count in the "
               "size at the scheme's bits and in neither BOPs nor FLOPs",
               (_FP_ENDS, PolicyRule(SKIP_CONVS, count_ops=False, why="skip convs left out of BiDM's OPs"))),
        Policy("bidm-as-coded", "BiDM's released code: as binarydm, plus full-precision skip convs, a "
               "full-precision 1x1 shortcut beside each binarized conv whose channel counts differ, and each binary "
               "conv's activation scale path (channel mean of |x|, a k x k conv on it, x K)",
               (_FP_ENDS, PolicyRule(SKIP_CONVS, FULL, FULL, why="skip convs at full precision (code)")),
               extra_shortcuts=True, scale_path=True),
        Policy("bidm-fp-skips", "BiDM's Table 4 read a third way: as binarydm, plus the ResBlock skip convs at "
               "full precision (as the code keeps them), without the code's added 1x1 shortcuts",
               (_FP_ENDS, PolicyRule(SKIP_CONVS, FULL, FULL, why="skip convs at full precision"))),
        Policy("efficientdm-as-coded", "EfficientDM's released code: skip convs, downsample convs and attention "
               "projections at full precision; time embedding, first and last layer at W8A8",
               (PolicyRule(TIME_EMBEDDING + FIRST_LAST, "int8", "int8", why="W8A8 in EfficientDM's code"),
                PolicyRule(SKIP_CONVS + DOWNSAMPLE_CONVS + ATTENTION_PROJECTIONS, FULL, FULL,
                           why="left unquantized in EfficientDM's code"))),
    )
}
POLICY_ALIASES = {"bidm": "bidm-as-published", "efficientdm-as-published": "all-quantized"}


def get_policy(name: str) -> Policy:
    key = POLICY_ALIASES.get(name, name)
    if key not in POLICIES:
        raise ValueError(unknown("layer policy", name, sorted(POLICIES) + sorted(POLICY_ALIASES)))
    return POLICIES[key]
