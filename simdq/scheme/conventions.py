"""The counting conventions an estimate can follow (their rules: simdq.cost.accounting).

binarydm and bidm count as those papers do (conv and linear layers only, OPs = BOPs / 64 + FLOPs);
full counts every op.
"""

PAPER_CONVENTIONS = ("binarydm", "bidm")
CONVENTIONS = PAPER_CONVENTIONS + ("full",)
