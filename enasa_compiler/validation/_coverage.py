"""Prove a plan covers what each subnet computes: node by node, in data-flow order.

For each subnet ``s`` the validator walks the subnet's work nodes (from its own ONNX
file, :mod:`._subnet_work`) in topological order and pairs each with a plan operator
that lists ``s`` in its ``subnets``, has the node's op type and reads the plan values
the node's inputs became. The subnet's input is the plan's input; a node's outputs
become the paired operator's outputs. So the pairing follows the subnet's data flow:
an operator paired with a node reads exactly what the operators paired with the
node's producers write, and must list those producers in its ``deps``. Then it
compares what the operator claims with what the node needs (kind, MACs, vectors,
elements, ops, the weight matrices' hashes and sizes) and, at the end, whether every
operator serves exactly the subnets whose nodes it was paired with, and whether each
subnet's outputs are the plan values its nodes became.

``Identity`` operators of the plan pass a value on and are read through. A node a
subnet computes twice (same op, attributes, constants and inputs) may be one
operator. Nothing here trusts operator ids: they are used only to prefer, among
operators that match equally well, the one named after the node.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field

from enasa_compiler.ir import OpKind
from enasa_compiler.plan import Plan, PlanOperator, SubnetInfo
from enasa_compiler.validation._checks import MISSING_OP, MODELS, Violation
from enasa_compiler.validation._subnet_work import Matrix, SubnetWork, Work, WorkNode

logger = logging.getLogger(__name__)

__all__ = ["check_coverage"]

ALIAS_OP_TYPE = "Identity"
"""The plan operator that passes its one input on unchanged; read through, never paired."""


@dataclass(frozen=True)
class _PlanView:
    """The plan as the pairing reads it: aliases resolved, operators indexed."""

    plan: Plan
    ops: dict[str, PlanOperator]  # every operator but the aliases
    every: dict[str, PlanOperator]  # aliases too
    position: dict[str, int]
    alias: dict[str, str]
    producers: dict[str, str]
    matrices: dict[str, Matrix]
    by_inputs: dict[tuple[str, tuple[str, ...]], list[PlanOperator]]
    readers: dict[str, list[PlanOperator]]

    @classmethod
    def build(cls, plan: Plan) -> _PlanView:
        ops: dict[str, PlanOperator] = {}
        every: dict[str, PlanOperator] = {}
        alias: dict[str, str] = {}
        producers: dict[str, str] = {}
        for op in plan.operators:
            every.setdefault(op.id, op)
            for value in op.outputs:
                producers.setdefault(value, op.id)
            if op.op_type == ALIAS_OP_TYPE and len(op.inputs) == 1 and len(op.outputs) == 1:
                alias.setdefault(op.outputs[0], op.inputs[0])
            else:
                ops.setdefault(op.id, op)
        matrices = {w.id: Matrix(w.sha256, w.rows, w.cols) for w in plan.weights}
        view = cls(plan, ops, every, {op_id: i for i, op_id in enumerate(ops)}, alias,
                   producers, matrices, defaultdict(list), defaultdict(list))
        for op in ops.values():
            reads = view.resolve_all(op.inputs)
            view.by_inputs[(op.op_type, reads)].append(op)
            for value in dict.fromkeys(reads):
                view.readers[value].append(op)
        return view

    def resolve(self, value: str) -> str:
        seen = set()
        while value in self.alias and value not in seen:
            seen.add(value)
            value = self.alias[value]
        return value

    def resolve_all(self, values: Sequence[str]) -> tuple[str, ...]:
        return tuple(self.resolve(v) for v in values)

    def depends_on(self, op: PlanOperator, producer: str) -> bool:
        """Whether ``producer`` is reachable from ``op`` through ``deps``."""
        if producer in op.deps:
            return True
        seen, stack = {op.id}, list(op.deps)
        while stack:
            current = stack.pop()
            if current == producer:
                return True
            if current in seen:
                continue
            seen.add(current)
            before = self.every.get(current)
            if before is not None:
                stack.extend(before.deps)
        return False


@dataclass
class _Findings:
    """What the pairing found, gathered over all subnets before it is reported."""

    served: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    # (operator, what, claimed, needed) -> [(subnet, node)]
    differences: dict[tuple[str, str, str, str], list[tuple[int, str]]] = field(
        default_factory=lambda: defaultdict(list))
    violations: list[Violation] = field(default_factory=list)
    reported: set[Hashable] = field(default_factory=set)

    def once(self, key: Hashable, violation: Violation) -> None:
        if key not in self.reported:
            self.reported.add(key)
            self.violations.append(violation)


def _subnets_text(indices: Sequence[int] | set[int]) -> str:
    ordered = sorted(indices)
    return f"subnet{'s' if len(ordered) != 1 else ''} {','.join(map(str, ordered))}"


def _subnet_label(subnet: SubnetInfo) -> str:
    return f"subnet {subnet.index} ('{subnet.name}')"


def _claims(view: _PlanView, op: PlanOperator, work: Work) -> list[tuple[str, str, str]]:
    """List each way ``op`` differs from ``work`` as (what, claimed, needed)."""
    if op.kind is not work.kind:
        return [("kind", op.kind.value, work.kind.value)]
    differences = []
    counts = (("macs", op.macs, work.macs),
              ("vectors_per_image", op.vectors_per_image, work.vectors_per_image),
              ("elements", op.elements, work.elements), ("ops", op.ops, work.ops))
    for what, claimed, needed in counts:
        if needed is not None and claimed != needed:
            differences.append((what, str(claimed), str(needed)))
    if op.kind is OpKind.MVM and all(w in view.matrices for w in op.weights):
        claimed_matrices = [view.matrices[w] for w in op.weights]
        if claimed_matrices != list(work.matrices) * max(1, op.copies):
            differences.append(("weights", ", ".join(map(str, claimed_matrices)),
                                ", ".join(map(str, work.matrices))))
    return differences


def _score(view: _PlanView, op: PlanOperator, node: WorkNode, work: Work | None) -> tuple[
        int, int, int]:
    """Rank equally plausible operators: fewer differences, named after the node, first."""
    differences = len(_claims(view, op, work)) if work is not None else 0
    named = op.id.partition("/")[2] == node.name or op.id == node.name
    return (-differences, int(named), -view.position[op.id])


class _SubnetPairing:
    """Pairs one subnet's work nodes with plan operators, in the subnet's order."""

    def __init__(self, view: _PlanView, subnet: SubnetInfo, work: SubnetWork,
                 findings: _Findings) -> None:
        self.view, self.subnet, self.work, self.findings = view, subnet, work, findings
        self.values: dict[str, str] = {work.input_name: view.resolve(view.plan.input_name)}
        self.used: set[str] = set()
        self.paired: dict[Hashable, PlanOperator] = {}
        self.absorbed: set[int] = set()  # BN nodes folded into the conv before them
        self.lost_batch_norms: set[int] = set()  # BN nodes after a conv not in the plan

    def run(self) -> None:
        for node in self.work.nodes:
            if node.index not in self.absorbed:
                self.pair(node)
        self.check_outputs()

    def pair(self, node: WorkNode) -> None:
        inputs = [self.values.get(v) for v in node.inputs]
        if node.problem is not None:
            self.findings.violations.append(Violation(
                MODELS, f"{_subnet_label(self.subnet)}: node '{node.name}' ({node.op_type}) "
                        f"cannot be mapped: {node.problem}"))
        if None in inputs:
            op = self._pick(node, self._wildcard(node, inputs))
        else:
            known = tuple(v for v in inputs if v is not None)
            key = (node.op_type, known)
            mine = [op for op in self.view.by_inputs.get(key, ())
                    if self.subnet.index in op.subnets and op.id not in self.used]
            op = self._pick(node, mine)
            if op is None and self._same_as_before(node, known):
                return
            if op is None:  # computed, but by an operator that does not list this subnet
                op = self._pick(node, [o for o in self.view.by_inputs.get(key, ())
                                       if o.id not in self.used])
        if op is None:
            if node.index not in self.lost_batch_norms:
                self.findings.violations.append(Violation(
                    MISSING_OP, f"{_subnet_label(self.subnet)}: node '{node.name}' "
                                f"({node.op_type}) of the model is not in the plan"))
            if node.folds is not None:  # it went with the conv, if it was folded into it
                self.lost_batch_norms.add(node.folds)
            return
        self._accept(node, op, inputs)

    def _wildcard(self, node: WorkNode, inputs: list[str | None]) -> list[PlanOperator]:
        """List operators that could compute a node one of whose producers was lost.

        An input whose producer is missing from the plan matches any value, so one
        lost operator is reported once, not again for everything after it.
        """
        found = []
        for op in self.view.ops.values():
            if (op.op_type != node.op_type or self.subnet.index not in op.subnets
                    or op.id in self.used or len(op.inputs) != len(inputs)):
                continue
            reads = self.view.resolve_all(op.inputs)
            if all(v is None or v == r for v, r in zip(inputs, reads, strict=True)):
                found.append(op)
        return found

    def _pick(self, node: WorkNode, candidates: list[PlanOperator]) -> PlanOperator | None:
        if not candidates:
            return None
        return max(candidates, key=lambda op: _score(self.view, op, node, self._expected(
            node, op)))

    def _same_as_before(self, node: WorkNode, inputs: tuple[str, ...]) -> bool:
        """Pair a node the subnet already computed (same key) with the earlier operator."""
        key = (self.work.constant_key(node), inputs)
        earlier = self.paired.get(key)
        if earlier is None:
            return False
        self._bind_outputs(node, earlier)
        return True

    def _expected(self, node: WorkNode, op: PlanOperator) -> Work | None:
        """Return the node's work, its BN folded in when the plan has no BN after ``op``."""
        return node.folded if self._folds_batch_norm(node, op) else node.work

    def _folds_batch_norm(self, node: WorkNode, op: PlanOperator) -> bool:
        return node.folded is not None and not self._keeps_batch_norm(op)

    def _keeps_batch_norm(self, op: PlanOperator) -> bool:
        if not op.outputs:
            return False
        result = self.view.resolve(op.outputs[0])
        return any(o.op_type == "BatchNormalization" and self.subnet.index in o.subnets
                   and self.view.resolve_all(o.inputs)[:1] == (result,)
                   for o in self.view.readers.get(result, ()))

    def _accept(self, node: WorkNode, op: PlanOperator, inputs: list[str | None]) -> None:
        self.used.add(op.id)
        self.findings.served[op.id].add(self.subnet.index)
        for model_value, plan_value in zip(node.inputs, self.view.resolve_all(op.inputs),
                                           strict=False):
            self.values.setdefault(model_value, plan_value)
        expected = self._expected(node, op)
        if expected is not None:
            for what, claimed, needed in _claims(self.view, op, expected):
                self.findings.differences[(op.id, what, claimed, needed)].append(
                    (self.subnet.index, node.name))
        if node.folds is not None and self._folds_batch_norm(node, op):
            norm = self.work.by_index[node.folds]
            self.absorbed.add(norm.index)
            for value in norm.outputs[:1]:
                self.values[value] = self.view.resolve(op.outputs[0])
        self._check_deps(node, op)
        self._bind_outputs(node, op)
        if node.problem is None:
            known = tuple(v for v in inputs if v is not None)
            self.paired.setdefault((self.work.constant_key(node), known), op)

    def _bind_outputs(self, node: WorkNode, op: PlanOperator) -> None:
        if len(node.outputs) != len(op.outputs):
            self.findings.once(("outputs", op.id), Violation(
                MODELS, f"operator '{op.id}' has {len(op.outputs)} outputs, node "
                        f"'{node.name}' of {_subnet_label(self.subnet)} has "
                        f"{len(node.outputs)}"))
        for model_value, plan_value in zip(node.outputs, op.outputs, strict=False):
            if model_value:
                self.values[model_value] = self.view.resolve(plan_value)

    def _check_deps(self, node: WorkNode, op: PlanOperator) -> None:
        """Check ``op`` depends on the operators writing what it reads for the node."""
        for value in op.inputs:
            producer = self.view.producers.get(value)
            if producer is None or producer == op.id or self.view.depends_on(op, producer):
                continue
            self.findings.once(("deps", op.id, producer), Violation(
                MODELS, f"operator '{op.id}' reads '{value}' from '{producer}' (node "
                        f"'{node.name}' of {_subnet_label(self.subnet)}) but does not "
                        f"depend on it"))

    def check_outputs(self) -> None:
        label = _subnet_label(self.subnet)
        if len(self.work.outputs) != len(self.subnet.outputs):
            self.findings.violations.append(Violation(
                MODELS, f"{label} has {len(self.subnet.outputs)} outputs in the plan, "
                        f"{len(self.work.outputs)} in its model"))
        for position, (model_value, plan_value) in enumerate(
                zip(self.work.outputs, self.subnet.outputs, strict=False)):
            computed = self.values.get(model_value)
            if computed is not None and computed != self.view.resolve(plan_value):
                self.findings.violations.append(Violation(
                    MODELS, f"{label} output {position} is '{plan_value}' in the plan, but "
                            f"its model computes it as '{computed}'"))


def _reported_differences(view: _PlanView, findings: _Findings) -> Iterator[Violation]:
    for (op_id, what, claimed, needed), where in findings.differences.items():
        subnets = _subnets_text({s for s, _ in where})
        nodes = ", ".join(f"'{n}'" for n in dict.fromkeys(n for _, n in where))
        op_type = view.ops[op_id].op_type
        if what == "weights":
            text = (f"uses other weights than node {nodes} of {subnets}: the plan's "
                    f"matrices {claimed}, the model's {needed}")
        else:
            text = f"claims {what} {claimed}, node {nodes} of {subnets} needs {needed}"
        yield Violation(MODELS, f"operator '{op_id}' ({op_type}) {text}")


def _reported_subnets(view: _PlanView, findings: _Findings) -> Iterator[Violation]:
    for op in view.ops.values():
        served = findings.served.get(op.id, set())
        if not served:
            yield Violation(MODELS, f"operator '{op.id}' in the plan is not in the models")
        elif served != set(op.subnets):
            yield Violation(MODELS, f"operator '{op.id}' serves subnets "
                                    f"{','.join(map(str, op.subnets))} in the plan but "
                                    f"{','.join(map(str, sorted(served)))} in the models")


def check_coverage(plan: Plan, works: Sequence[SubnetWork]) -> Iterator[Violation]:
    """Check the plan's operators cover the subnets' work exactly; yield what differs.

    Args:
        plan: a plan that passed the schema.
        works: each subnet's work (:func:`~._subnet_work.derive_work`), in subnet order.

    """
    view = _PlanView.build(plan)
    findings = _Findings()
    for subnet, work in zip(plan.subnets, works, strict=True):
        if plan.input_shape != work.input_shape:
            findings.violations.append(Violation(
                MODELS, f"{_subnet_label(subnet)} takes input {work.input_shape} in its "
                        f"model, the plan's input is {plan.input_shape}"))
        _SubnetPairing(view, subnet, work, findings).run()
    yield from findings.violations
    yield from _reported_differences(view, findings)
    yield from _reported_subnets(view, findings)
