"""The mapping plan: the single artifact between mapping and everything after it.

A plan records the target it was made for (the full target and its hash), the
subnets (file hashes, architectures when known), the deduplicated operators, every
weight tile and the crossbar it sits on, and the schedule: programming intervals
(tile written into a crossbar) and compute intervals (operator run on the crossbars
that hold its tiles, or on a digital unit). Times are integer nanoseconds.

The JSON form is versioned (``format: enasa-plan``, ``version: 3``) and described by
``schemas/plan.schema.json``; ``docs/plan-format.md`` explains the fields. JSON is
written with sorted keys and rounded energies so equal plans are byte-identical.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from enasa_compiler import budgets
from enasa_compiler.atomic import json_text, write_atomic
from enasa_compiler.errors import InputError
from enasa_compiler.ir import (
    ComputeEvent,
    CrossbarContents,
    DigitalOp,
    MvmOp,
    OpKind,
    PeriodicSchedule,
    PeriodicSlot,
    PipelineSegment,
    Placement,
    ProgramEvent,
    Tile,
    TileKey,
    WeightMatrix,
)

logger = logging.getLogger(__name__)

__all__ = [
    "PLAN_FORMAT",
    "PLAN_VERSION",
    "ComputeEvent",
    "Placement",
    "Plan",
    "Pipeline",
    "PipelineTotals",
    "PlanOperator",
    "ProgramEvent",
    "SubnetInfo",
    "Totals",
]

PLAN_FORMAT = "enasa-plan"
# 2: operators carry ``copies`` (weight duplication) and the target is format 2.
# 3: a ``pipeline`` section: the periodic schedule of many images.
PLAN_VERSION = 3
_ENERGY_DECIMALS = 3


@dataclass(frozen=True)
class SubnetInfo:
    """One subnet of the group, traced back to the file it came from."""

    index: int
    name: str
    source_sha256: str
    outputs: tuple[str, ...]
    arch: tuple[int, ...] | None = None


@dataclass(frozen=True)
class PlanOperator:
    """An operator of the deduplicated group and its cost on the target.

    ``weights`` names the weight matrices an MVM operator needs (all their tiles at
    once); digital operators have none. ``deps`` are the operators it waits for.
    ``copies`` > 1 means weight duplication: ``weights`` lists that many copies of the
    operator's matrices, copy after copy, and the input vectors are split over them.
    """

    id: str
    kind: OpKind
    op_type: str
    subnets: tuple[int, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    deps: tuple[str, ...]
    weights: tuple[str, ...]
    macs: int
    vectors_per_image: int
    elements: int
    ops: int
    layer: str
    latency_ns: int
    energy_pj: float
    copies: int = 1


@dataclass(frozen=True)
class Totals:
    """Plan-wide figures, re-derivable from the schedule (the validator does)."""

    makespan_ns: int
    energy_pj: float
    compute_energy_pj: float
    write_energy_pj: float
    cell_writes: int
    program_events: int
    crossbars_used: int
    busy_crossbar_ns: int
    utilization: float
    allocated_utilization: float
    spatial_utilization: float
    macs: int


@dataclass(frozen=True)
class PipelineTotals:
    """Figures of the pipelined run of ``images`` images (re-derivable from its segments).

    Attributes:
        images: images run (per subnet: every subnet sees each image).
        ii_ns: time per image in steady state: the initiation interval of a resident
            plan; a segmented plan's micro-batch cycle over its micro-batch size.
        latency_ns: one image's time through the pipeline (for a segmented plan, a
            cycle of one image, writes included).
        makespan_ns: start, then every cycle of micro-batches, writes included.
        energy_pj: compute, write and off-chip energy.
        compute_energy_pj: every operator's per-image energy times ``images``.
        write_energy_pj: programming: once before a resident pipeline, every cycle's
            segment writes for a segmented one.
        offchip_energy_pj: activations crossing segment boundaries, stored in the
            buffer or, when a micro-batch's do not fit, off chip and read back.
        offchip_bytes: bytes moved off chip and back over the run.
        busy_crossbar_ns_per_image: crossbar-time occupied per image (each MVM slot's
            duration times its crossbars).
        crossbars_used: crossbars the slots occupy.
        allocated_utilization: steady state, ``busy / (crossbars_used x ii_ns)``.
        utilization: steady state, ``busy / (chip crossbars x ii_ns)``.
        compute_ns: makespan less ``write_ns``.
        write_ns: time spent writing tiles while nothing computes.

    """

    images: int
    ii_ns: int
    latency_ns: int
    makespan_ns: int
    energy_pj: float
    compute_energy_pj: float
    write_energy_pj: float
    offchip_energy_pj: float
    offchip_bytes: int
    busy_crossbar_ns_per_image: int
    crossbars_used: int
    allocated_utilization: float
    utilization: float
    compute_ns: int
    write_ns: int


@dataclass(frozen=True)
class Pipeline:
    """The pipelined run of a plan: its segments, bounds and totals (plan format 3).

    ``start_ns`` is when the first segment starts (after a resident plan's one-time
    programming; 0 for a segmented plan, whose segments write their own tiles). Images
    run in micro-batches of ``micro_batch``: each micro-batch passes through every
    segment in order (a resident plan has one segment and one micro-batch of all the
    images). ``bounds`` holds ``ii_lower_bound_ns`` (for the plan's segments, copies
    and lanes: each crossbar's and the digital units' work per image over their
    capacity, and the longest operator; summed over segments), ``ii_binding`` (what
    sets it), ``gap``, ``best_ii_ns`` (the lowest bound any duplication and lane choice
    reaches on this chip) and ``best_allocated_utilization`` (an upper bound on the
    steady-state utilisation of allocated crossbars any duplication reaching the
    plan's II can have).
    """

    images: int
    micro_batch: int
    start_ns: int
    segments: tuple[PipelineSegment, ...]
    bounds: dict[str, Any]
    totals: PipelineTotals

    @property
    def schedule(self) -> PeriodicSchedule:
        """The first segment's schedule: the whole pipeline of a resident plan."""
        return self.segments[0].schedule

    def slots(self) -> tuple[PeriodicSlot, ...]:
        """Every slot of every segment."""
        return tuple(slot for seg in self.segments for slot in seg.schedule.slots)


@dataclass(frozen=True)
class Plan:
    """A complete, versioned mapping of a group of subnets onto a target."""

    target: dict[str, Any]
    target_sha256: str
    mode: str
    solver: str
    batch: int
    input_name: str
    input_shape: tuple[int, ...]
    subnets: tuple[SubnetInfo, ...]
    weights: tuple[WeightMatrix, ...]
    operators: tuple[PlanOperator, ...]
    program: tuple[ProgramEvent, ...]
    compute: tuple[ComputeEvent, ...]
    totals: Totals
    dedup: dict[str, int] = field(default_factory=dict)
    bounds: dict[str, Any] = field(default_factory=dict)
    initial: tuple[Placement, ...] = ()
    pipeline: Pipeline | None = None
    version: int = PLAN_VERSION

    # ---- lookup helpers -------------------------------------------------------------
    def operator(self, op_id: str) -> PlanOperator:
        """Return the operator with this id."""
        for op in self.operators:
            if op.id == op_id:
                return op
        raise KeyError(op_id)

    def final_contents(self) -> CrossbarContents:
        """Return what each crossbar holds when this plan ends: the last tile written.

        The start state of the next group's online mapping (``--initial-state``). A
        crossbar holding packed tiles (written with offsets) is left out: online mapping
        reuses whole crossbars only.
        """
        tiles = {t.id: (w, t) for w in self.weights for t in w.tiles}
        last: dict[int, tuple[int, str]] = {p.crossbar: (-1, p.tile) for p in self.initial}
        for write in self.program:
            if write.crossbar not in last or write.end_ns >= last[write.crossbar][0]:
                last[write.crossbar] = (write.end_ns, write.tile)
        for crossbar in {w.crossbar for w in self.program if w.packed}:
            del last[crossbar]
        contents: dict[int, TileKey] = {}
        for crossbar, (_, tile_id) in last.items():
            matrix, tile = tiles[tile_id]
            contents[crossbar] = (matrix.sha256, matrix.columns_per_weight, tile.row_start,
                                  tile.row_stop, tile.col_start, tile.col_stop,
                                  tile.phys_rows, tile.phys_cols)
        return CrossbarContents(target_sha256=self.target_sha256,
                                target_name=str(self.target.get("name")), tiles=contents)

    def tiles(self) -> dict[str, Tile]:
        """Every tile by id."""
        return {t.id: t for w in self.weights for t in w.tiles}

    def to_ir_op(self, op: PlanOperator) -> MvmOp | DigitalOp:
        """Rebuild the IR operator (for the cost model) from its plan record."""
        if op.kind is OpKind.MVM:
            matrices = {w.id: w for w in self.weights}
            return MvmOp(
                id=op.id, op_type=op.op_type, subnets=op.subnets, inputs=op.inputs,
                outputs=op.outputs, weights=tuple(matrices[w] for w in op.weights),
                vectors_per_image=op.vectors_per_image, macs=op.macs, layer=op.layer,
                copies=op.copies,
            )
        return DigitalOp(
            id=op.id, op_type=op.op_type, subnets=op.subnets, inputs=op.inputs,
            outputs=op.outputs, elements=op.elements, ops=op.ops, layer=op.layer,
            macs=op.macs,
        )

    # ---- JSON -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Return the plan as JSON-ready data (the schema's shape)."""
        return {
            "format": PLAN_FORMAT,
            "version": self.version,
            "target": copy.deepcopy(self.target),
            "target_sha256": self.target_sha256,
            "mode": self.mode,
            "solver": self.solver,
            "batch": self.batch,
            "input": {"name": self.input_name, "shape": list(self.input_shape)},
            "subnets": [
                {"index": s.index, "name": s.name, "source_sha256": s.source_sha256,
                 "outputs": list(s.outputs),
                 "arch": list(s.arch) if s.arch is not None else None}
                for s in self.subnets
            ],
            "weights": [
                {"id": w.id, "sha256": w.sha256, "rows": w.rows, "cols": w.cols,
                 "columns_per_weight": w.columns_per_weight,
                 "tiles": [{"id": t.id, "row_start": t.row_start, "row_stop": t.row_stop,
                            "col_start": t.col_start, "col_stop": t.col_stop,
                            "phys_rows": t.phys_rows, "phys_cols": t.phys_cols}
                           for t in w.tiles]}
                for w in self.weights
            ],
            "operators": [
                {"id": o.id, "kind": o.kind.value, "op_type": o.op_type,
                 "subnets": list(o.subnets), "inputs": list(o.inputs),
                 "outputs": list(o.outputs), "deps": list(o.deps), "weights": list(o.weights),
                 "macs": o.macs, "vectors_per_image": o.vectors_per_image,
                 "elements": o.elements, "ops": o.ops, "layer": o.layer,
                 "latency_ns": o.latency_ns, "energy_pj": _round(o.energy_pj),
                 "copies": o.copies}
                for o in self.operators
            ],
            "schedule": {
                "program": [_program_dict(e) for e in self.program],
                "compute": [
                    {"op": e.op, "start_ns": e.start_ns, "end_ns": e.end_ns,
                     "placements": [{"tile": p.tile, "crossbar": p.crossbar}
                                    for p in e.placements],
                     "unit": e.unit}
                    for e in self.compute
                ],
            },
            "dedup": dict(self.dedup),
            "bounds": dict(self.bounds),
            "initial_state": [{"tile": p.tile, "crossbar": p.crossbar}
                              for p in self.initial],
            # Energies are rounded (sums of many floats); ratios keep full precision,
            # since a utilization of 4e-4 must not be written as 0.0.
            "totals": {k: (_round(v) if k.endswith("_pj") else v)
                       for k, v in self.totals.__dict__.items()},
            "pipeline": _pipeline_dict(self.pipeline),
        }

    def to_json(self) -> str:
        """Canonical JSON text: sorted keys, fixed rounding, trailing newline."""
        return json_text(self.to_dict(), "the plan", sort_keys=True, indent=1) + "\n"

    def save(self, path: str | Path) -> Path:
        """Write the plan atomically (a reader never sees half a plan)."""
        return write_atomic(Path(path), self.to_json())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        """Build a plan from JSON data that passed the schema.

        Raises:
            InputError: a key or value the typed plan cannot hold.

        """
        try:
            return _plan_from_dict(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"plan does not match format version {PLAN_VERSION}: "
                             f"{type(exc).__name__}: {exc}") from exc

    @classmethod
    def load(cls, path: str | Path) -> Plan:
        """Read, schema-check and parse a plan file.

        Raises:
            InputError: unreadable, not JSON, or not a valid plan document.

        """
        from enasa_compiler.plan.schema import check_schema

        data = read_plan_json(path)
        problems = check_schema(data)
        if problems:
            raise InputError(f"{path}: {problems[0]}")
        return cls.from_dict(data)


def read_plan_json(path: str | Path) -> Any:
    """Read a plan file as JSON, with the errors a user can act on.

    The file's size and then its number of JSON values are checked against
    :mod:`enasa_compiler.budgets` before it is parsed (so before the schema walks it), and
    ``NaN`` / ``Infinity``, which Python's JSON reader accepts, are refused as the
    invalid JSON they are.
    """
    path = Path(path)
    try:
        budgets.check_bytes(f"plan file {path}", path.stat().st_size, "max_plan_bytes")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InputError(f"plan file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read plan file {path}: {exc}") from exc
    # Every JSON value but a container's first is preceded by a comma, so commas plus
    # brackets bound the values the parser would build (over by any in strings).
    values = text.count(",") + text.count("[") + text.count("{")
    budgets.check_count(f"plan file {path}", values, "max_plan_entries", "JSON values")
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except RecursionError as exc:
        raise InputError(f"plan file {path} is not valid JSON: nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError, or an integer of over 4300 digits
        raise InputError(f"plan file {path} is not valid JSON: {exc}") from exc


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _round(value: float) -> float:
    return round(float(value), _ENERGY_DECIMALS)


def _program_dict(event: ProgramEvent) -> dict[str, Any]:
    data: dict[str, Any] = {"tile": event.tile, "crossbar": event.crossbar,
                            "start_ns": event.start_ns, "end_ns": event.end_ns,
                            "energy_pj": _round(event.energy_pj)}
    if event.packed:  # tile packing: where the tile sits in its crossbar
        data["row_offset"] = event.row_offset
        data["col_offset"] = event.col_offset
    if event.prefetch:  # segmented pipelines: written while the previous segment runs
        data["prefetch"] = True
    return data


def _program_from_dict(data: dict[str, Any]) -> ProgramEvent:
    rows, cols = data.get("row_offset"), data.get("col_offset")
    return ProgramEvent(tile=data["tile"], crossbar=int(data["crossbar"]),
                        start_ns=int(data["start_ns"]), end_ns=int(data["end_ns"]),
                        energy_pj=float(data["energy_pj"]),
                        row_offset=None if rows is None else int(rows),
                        col_offset=None if cols is None else int(cols),
                        prefetch=bool(data.get("prefetch", False)))


def _slot_dict(slot: PeriodicSlot) -> dict[str, Any]:
    return {"op": slot.op, "offset_ns": slot.offset_ns, "duration_ns": slot.duration_ns,
            "placements": [{"tile": p.tile, "crossbar": p.crossbar}
                           for p in slot.placements],
            "units": list(slot.units)}


def _pipeline_dict(pipeline: Pipeline | None) -> dict[str, Any] | None:
    if pipeline is None:
        return None
    return {
        "images": pipeline.images,
        "micro_batch": pipeline.micro_batch,
        "start_ns": pipeline.start_ns,
        "segments": [
            {"ii_ns": seg.schedule.ii_ns,
             "writes": [_program_dict(w) for w in seg.writes],
             "slots": [_slot_dict(slot) for slot in seg.schedule.slots]}
            for seg in pipeline.segments
        ],
        "bounds": dict(pipeline.bounds),
        "totals": {k: (_round(v) if k.endswith("_pj") else v)
                   for k, v in pipeline.totals.__dict__.items()},
    }


def _pipeline_from_dict(data: dict[str, Any] | None) -> Pipeline | None:
    if data is None:
        return None
    segments = tuple(
        PipelineSegment(
            writes=tuple(_program_from_dict(w) for w in seg["writes"]),
            schedule=PeriodicSchedule(ii_ns=int(seg["ii_ns"]), slots=tuple(
                PeriodicSlot(op=s["op"], offset_ns=int(s["offset_ns"]),
                             duration_ns=int(s["duration_ns"]),
                             placements=tuple(Placement(p["tile"], int(p["crossbar"]))
                                              for p in s["placements"]),
                             units=tuple(int(u) for u in s["units"]))
                for s in seg["slots"])))
        for seg in data["segments"]
    )
    return Pipeline(images=int(data["images"]), micro_batch=int(data["micro_batch"]),
                    start_ns=int(data["start_ns"]), segments=segments,
                    bounds=dict(data["bounds"]), totals=PipelineTotals(**data["totals"]))


def _plan_from_dict(data: dict[str, Any]) -> Plan:
    weights = tuple(
        WeightMatrix(
            id=w["id"], sha256=w["sha256"], rows=int(w["rows"]), cols=int(w["cols"]),
            columns_per_weight=int(w["columns_per_weight"]),
            tiles=tuple(Tile(**t) for t in w["tiles"]),
        )
        for w in data["weights"]
    )
    operators = tuple(
        PlanOperator(
            id=o["id"], kind=OpKind(o["kind"]), op_type=o["op_type"],
            subnets=tuple(o["subnets"]), inputs=tuple(o["inputs"]),
            outputs=tuple(o["outputs"]), deps=tuple(o["deps"]), weights=tuple(o["weights"]),
            macs=int(o["macs"]), vectors_per_image=int(o["vectors_per_image"]),
            elements=int(o["elements"]), ops=int(o["ops"]), layer=o["layer"],
            latency_ns=int(o["latency_ns"]), energy_pj=float(o["energy_pj"]),
            copies=int(o["copies"]),
        )
        for o in data["operators"]
    )
    schedule = data["schedule"]
    program = tuple(_program_from_dict(e) for e in schedule["program"])
    compute = tuple(
        ComputeEvent(
            op=e["op"], start_ns=int(e["start_ns"]), end_ns=int(e["end_ns"]),
            placements=tuple(Placement(p["tile"], int(p["crossbar"]))
                             for p in e["placements"]),
            unit=None if e.get("unit") is None else int(e["unit"]),
        )
        for e in schedule["compute"]
    )
    subnets = tuple(
        SubnetInfo(index=s["index"], name=s["name"], source_sha256=s["source_sha256"],
                   outputs=tuple(s["outputs"]),
                   arch=tuple(s["arch"]) if s.get("arch") is not None else None)
        for s in data["subnets"]
    )
    return Plan(
        target=data["target"], target_sha256=data["target_sha256"], mode=data["mode"],
        solver=data["solver"], batch=int(data["batch"]), input_name=data["input"]["name"],
        input_shape=tuple(data["input"]["shape"]), subnets=subnets, weights=weights,
        operators=operators, program=program, compute=compute,
        totals=Totals(**data["totals"]), dedup=dict(data.get("dedup", {})),
        bounds=dict(data.get("bounds", {})),
        initial=tuple(Placement(p["tile"], int(p["crossbar"]))
                      for p in data.get("initial_state", [])),
        pipeline=_pipeline_from_dict(data.get("pipeline")),
        version=int(data["version"]),
    )
