"""The operators the compiler maps: where each runs, how it is priced, how it is executed.

One table, read by lowering (:mod:`.lower`, which operators it accepts and how many
digital operations each costs), by ``enasa check`` (which sorts a model's operators
before compiling it) and by ``docs/operators.md``, whose table is generated from
:func:`support_table_markdown` (a test fails when the two disagree). The validator
re-derives the same counts on its own (``validation/_subnet_work.py``) and never reads
this module: it must not trust the compiler's view of its own work.

Pricing rules, and why:

* An MVM operator (Conv, ConvTranspose, Gemm, MatMul with a constant weight) is priced
  per crossbar read by ``targets/cost.py``; lowering gives it its matrices, vectors
  and MACs.
* A digital operator costs ``ops`` operations of a digital unit
  (``targets/cost.py:digital_cost``: ``ops / digital_ops_per_cycle`` cycles and
  ``ops * digital_pj_per_op``). ``ops`` is, per image:

  - ``output``: one per output element (element-wise functions, data movement). A
    transcendental function (Erf, Softplus, Mish...) is one operation, as the digital
    units' lookup-table activations are;
  - ``input``: one per input element read (pooling and reductions, which read a
    window per output);
  - ``macs``: the multiply-accumulates (depthwise convs, MatMul of two activations,
    as in attention);
  - ``normalization``: four per output element: a pass for the mean, a pass for the
    variance, then normalising and the affine scale-and-shift;
  - ``resampling``: one per output element per interpolation tap: 1 for nearest,
    ``2**k`` for linear and ``4**k`` for cubic, ``k`` the axes whose size changes.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

logger = logging.getLogger(__name__)

__all__ = [
    "OPERATORS",
    "OperatorSupport",
    "Placement",
    "Pricing",
    "is_supported",
    "support_table_markdown",
]


class Placement(enum.Enum):
    """Where an operator runs."""

    CROSSBARS = "crossbars"
    DIGITAL = "digital"
    CROSSBARS_OR_DIGITAL = "crossbars or digital"


class Pricing(enum.Enum):
    """How a digital operator's ``ops`` are counted (see the module docstring)."""

    MVM = "crossbar reads (vectors x tiles)"
    OUTPUT = "1 op per output element"
    INPUT = "1 op per input element"
    MACS = "1 op per multiply-accumulate"
    NORMALIZATION = "4 ops per output element"
    RESAMPLING = "1 op per output element per interpolation tap"


NORMALIZATION_OPS_PER_ELEMENT = 4
"""Digital operations per output element of a Layer/Instance/GroupNormalization."""


@dataclass(frozen=True)
class OperatorSupport:
    """One supported ONNX operator.

    Attributes:
        op_type: the ONNX op type (default domain).
        placement: where it runs.
        pricing: how its digital work is counted (MVM for crossbar operators).
        note: when the placement depends on the node, the rule.

    """

    op_type: str
    placement: Placement
    pricing: Pricing
    note: str = ""


def _rows(op_types: str, placement: Placement, pricing: Pricing, note: str = ""
          ) -> list[OperatorSupport]:
    return [OperatorSupport(op, placement, pricing, note) for op in op_types.split()]


_MVM_NOTE = "crossbars with a constant weight; digital (MACs) with two activations"
_CONV_NOTE = "crossbars; depthwise (one channel per group) digital, priced by MACs"
OPERATORS: dict[str, OperatorSupport] = {row.op_type: row for row in [
    *_rows("Conv ConvTranspose", Placement.CROSSBARS_OR_DIGITAL, Pricing.MVM, _CONV_NOTE),
    *_rows("Gemm MatMul", Placement.CROSSBARS_OR_DIGITAL, Pricing.MVM, _MVM_NOTE),
    *_rows("Relu Clip Add Sub Mul Div Sigmoid HardSigmoid HardSwish LeakyRelu Tanh Erf "
           "Gelu Sqrt Neg Abs Exp Max Min Sum BatchNormalization Cast Identity Dropout "
           "Softmax PRelu Pow Elu Softplus Mish Selu Celu Softsign LogSoftmax Log Reciprocal "
           "Floor Ceil Greater Less GreaterOrEqual LessOrEqual Equal Not And Or Where",
           Placement.DIGITAL, Pricing.OUTPUT),
    *_rows("Concat Split Slice Transpose Reshape Flatten Gather Squeeze Unsqueeze Pad "
           "Expand Tile DepthToSpace SpaceToDepth Shape", Placement.DIGITAL, Pricing.OUTPUT),
    *_rows("GlobalAveragePool GlobalMaxPool ReduceMean ReduceSum ReduceMax AveragePool "
           "MaxPool", Placement.DIGITAL, Pricing.INPUT),
    *_rows("LayerNormalization InstanceNormalization GroupNormalization", Placement.DIGITAL,
           Pricing.NORMALIZATION),
    *_rows("Resize Upsample", Placement.DIGITAL, Pricing.RESAMPLING,
           "modes nearest, linear (and cubic)"),
]}
"""Every operator lowering accepts, by op type."""


def is_supported(domain: str, op_type: str) -> bool:
    """Tell whether lowering accepts a node of this domain and op type."""
    return domain in ("", "ai.onnx") and op_type in OPERATORS


def support_table_markdown() -> str:
    """Render :data:`OPERATORS` as the Markdown table of ``docs/operators.md``."""
    executed = {Placement.CROSSBARS_OR_DIGITAL: "through its crossbar tiles (MVM)"}
    lines = ["| operator | runs on | priced by | executed by | note |",
             "|---|---|---|---|---|"]
    for row in sorted(OPERATORS.values(), key=lambda r: (r.placement.value, r.op_type)):
        how = executed.get(row.placement, "numpy" if row.op_type == "Relu"
                           else "onnx.reference")
        lines.append(f"| `{row.op_type}` | {row.placement.value} | {row.pricing.value} | "
                     f"{how} | {row.note} |")
    return "\n".join(lines)
