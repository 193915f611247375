"""Plan-wide figures derived from a schedule: makespan, energy, utilization.

One function serves the mapper (which writes the totals into the plan) and the
validator (which re-derives them from the schedule and compares), so the
definitions live in one place. Definitions follow domain.md section 2:

* makespan: last event end minus first event start (programming included);
* utilization: busy crossbar-time / (crossbars on chip x makespan), where a crossbar
  is busy while an operator computes on it;
* allocated utilization: the same over the crossbars the plan uses;
* spatial utilization: cells holding weight bits / cells of the crossbars written,
  summed over programming events (a crossbar holding packed tiles counts once).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence

from enasa_compiler.ir import OpKind, PipelineSegment, Tile, WeightMatrix
from enasa_compiler.plan import (
    ComputeEvent,
    PipelineTotals,
    PlanOperator,
    ProgramEvent,
    Totals,
)
from enasa_compiler.targets.components import ChipSpec

logger = logging.getLogger(__name__)

__all__ = [
    "compute_pipeline_totals",
    "compute_totals",
    "crossing_bytes",
    "output_bytes",
    "pipeline_write_ns",
]

_BITS_PER_BYTE = 8


def compute_totals(
    operators: Sequence[PlanOperator],
    tiles: dict[str, Tile],
    program: Sequence[ProgramEvent],
    compute: Sequence[ComputeEvent],
    *,
    chip_crossbars: int,
    crossbar_cells: int,
) -> Totals:
    """Derive the plan totals from its events.

    Args:
        operators: the plan's operators (their ``energy_pj`` and ``macs`` are summed).
        tiles: every tile by id (for cell counts).
        program: programming events.
        compute: compute events.
        chip_crossbars: crossbars on the chip.
        crossbar_cells: ``rows * cols`` of one crossbar.

    """
    events = [(e.start_ns, e.end_ns) for e in program] + [(e.start_ns, e.end_ns)
                                                         for e in compute]
    makespan_ns = (max(end for _, end in events) - min(start for start, _ in events)
                   if events else 0)
    busy_crossbar_ns = sum((e.end_ns - e.start_ns) * len({p.crossbar for p in e.placements})
                           for e in compute)
    used = {p.crossbar for e in compute for p in e.placements} | {e.crossbar for e in program}
    compute_energy_pj = sum(op.energy_pj for op in operators)
    write_energy_pj = sum(e.energy_pj for e in program)
    cell_writes = sum(tiles[e.tile].cells for e in program if e.tile in tiles)
    denominator = makespan_ns * chip_crossbars
    allocated = makespan_ns * len(used)
    return Totals(
        makespan_ns=makespan_ns,
        energy_pj=compute_energy_pj + write_energy_pj,
        compute_energy_pj=compute_energy_pj,
        write_energy_pj=write_energy_pj,
        cell_writes=cell_writes,
        program_events=len(program),
        crossbars_used=len(used),
        busy_crossbar_ns=busy_crossbar_ns,
        utilization=busy_crossbar_ns / denominator if denominator else 0.0,
        allocated_utilization=busy_crossbar_ns / allocated if allocated else 0.0,
        spatial_utilization=(cell_writes / (_written_crossbars(program) * crossbar_cells)
                             if program else 0.0),
        macs=sum(op.macs for op in operators),
    )


def _written_crossbars(program: Sequence[ProgramEvent]) -> int:
    """Crossbars written, once per write; packed writes count once per crossbar.

    A packed write (with offsets) fills part of a crossbar beside other tiles, so the
    crossbars it shares count once, however many tiles went into them.
    """
    plain = sum(1 for e in program if not e.packed)
    return plain + len({e.crossbar for e in program if e.packed})


def output_bytes(op: PlanOperator, weights: Mapping[str, WeightMatrix], a_bits: int) -> int:
    """Bytes one image of ``op``'s outputs takes at ``a_bits`` per activation."""
    if op.kind is OpKind.MVM:
        base = op.weights[: len(op.weights) // max(1, op.copies)]
        elements = op.vectors_per_image * sum(weights[w].cols for w in base if w in weights)
    else:
        elements = op.elements
    return math.ceil(elements * a_bits / _BITS_PER_BYTE)


def crossing_bytes(operators: Sequence[PlanOperator], weights: Mapping[str, WeightMatrix],
                   segment_of: Mapping[str, int], a_bits: int) -> int:
    """Bytes per image of activations read in a later segment than the one making them.

    Each such value is stored once when made and read back once per later segment
    that reads it.
    """
    producer = {v: op for op in operators for v in op.outputs}
    readers: dict[str, set[int]] = {}
    for op in operators:
        for value in op.inputs:
            made = producer.get(value)
            if made is not None and segment_of.get(made.id) != segment_of.get(op.id):
                readers.setdefault(made.id, set()).add(segment_of.get(op.id, 0))
    by_id = {op.id: op for op in operators}
    return sum(output_bytes(by_id[op_id], weights, a_bits) * (1 + len(segments))
               for op_id, segments in readers.items())


def compute_pipeline_totals(
    *,
    images: int,
    micro_batch: int,
    start_ns: int,
    segments: Sequence[PipelineSegment],
    image_energy_pj: float,
    program: Sequence[ProgramEvent],
    moved_bytes_per_image: int,
    chip: ChipSpec,
) -> PipelineTotals:
    """Derive the figures of a pipelined run from its segments.

    Args:
        images: images run.
        micro_batch: images per pass through the segments.
        start_ns: when the first segment starts (after one-time programming).
        segments: the segments, run one after another for every micro-batch.
        image_energy_pj: every operator's energy for one image, summed.
        program: the one-time programming events before ``start_ns`` (resident).
        moved_bytes_per_image: activation bytes stored and read back between
            segments per image (:func:`crossing_bytes`).
        chip: the chip (crossbars, activation buffer, off-chip memory).

    Definitions (docs/plan-format.md): a micro-batch of ``k`` images takes every
    segment's :meth:`~enasa_compiler.ir.PipelineSegment.duration_ns` for ``k`` (a
    segment with prefetched writes hides them behind the previous segment's images,
    the last segment of the previous pass for the first one; the first pass has
    nothing before it), plus, when its crossing activations (half the moved bytes:
    stored once, then read) do not fit the buffer, the off-chip transfer time; the
    makespan adds the micro-batches to ``start_ns``. ``write_ns`` is the exposed write
    time: in-place writes and waits for prefetched ones (:func:`pipeline_write_ns`).
    Steady-state utilisation is crossbar-time occupied per image over crossbars times
    the time per image.

    """
    full, rest = divmod(images, micro_batch)
    buffer_bytes = chip.buffer_kib * 1024

    def offchip(count: int) -> int:
        moved = count * moved_bytes_per_image
        return moved if moved and moved / 2 > buffer_bytes else 0

    def transfer_ns(moved: int) -> int:
        if not moved:
            return 0
        if chip.offchip_gb_per_s <= 0:
            return 0  # refused when planned; the validator reports it
        return math.ceil(moved / chip.offchip_gb_per_s)  # GB/s = bytes per ns

    def cycle_ns(count: int, before: int) -> int:
        return _pass_ns(segments, count, before)[0] + transfer_ns(offchip(count))

    def exposed_ns(count: int, before: int) -> int:
        return _pass_ns(segments, count, before)[1]

    counts = _passes(segments, images, micro_batch)
    # The steady-state pass prefetches behind the previous pass's last segment.
    last = segments[-1].schedule.finish_ns(micro_batch) if segments else 0
    cycles = len(counts)
    makespan_ns = start_ns + _repeat_sum(counts, cycle_ns)
    offchip_bytes = full * offchip(micro_batch) + (offchip(rest) if rest else 0)
    slots = [slot for seg in segments for slot in seg.schedule.slots]
    busy = sum(s.duration_ns * len({p.crossbar for p in s.placements}) for s in slots)
    used = len({p.crossbar for s in slots for p in s.placements})
    once_pj = sum(e.energy_pj for e in program)
    cycle_writes_pj = sum(w.energy_pj for seg in segments for w in seg.writes)
    compute_energy_pj = image_energy_pj * images
    write_energy_pj = once_pj + cycles * cycle_writes_pj
    offchip_energy_pj = offchip_bytes * chip.offchip_pj_per_byte
    write_ns = start_ns + _repeat_sum(counts, exposed_ns)
    if len(segments) == 1 and not segments[0].writes:
        ii = segments[0].schedule.ii_ns
        latency = segments[0].schedule.latency_ns()
    else:
        ii = math.ceil(cycle_ns(micro_batch, last) / micro_batch)
        latency = cycle_ns(1, 0)
    return PipelineTotals(
        images=images,
        ii_ns=ii,
        latency_ns=latency,
        makespan_ns=makespan_ns,
        energy_pj=compute_energy_pj + write_energy_pj + offchip_energy_pj,
        compute_energy_pj=compute_energy_pj,
        write_energy_pj=write_energy_pj,
        offchip_energy_pj=offchip_energy_pj,
        offchip_bytes=offchip_bytes,
        busy_crossbar_ns_per_image=busy,
        crossbars_used=used,
        allocated_utilization=busy / (used * ii) if used and ii else 0.0,
        utilization=busy / (chip.crossbars * ii) if ii else 0.0,
        compute_ns=makespan_ns - write_ns,
        write_ns=write_ns,
    )


def _passes(segments: Sequence[PipelineSegment], images: int,
            micro_batch: int) -> list[tuple[int, int]]:
    """Return every pass as (images, the previous pass's last segment's finish).

    A pass's first segment prefetches behind that finish; the first pass has nothing
    before it (0).
    """
    full, rest = divmod(images, micro_batch)
    last = segments[-1].schedule.finish_ns(micro_batch) if segments else 0
    counts = [(micro_batch, 0)] * min(full, 1) + [(micro_batch, last)] * max(0, full - 1)
    if rest:
        counts.append((rest, last if full else 0))
    return counts


def _pass_ns(segments: Sequence[PipelineSegment], count: int, before: int) -> tuple[int, int]:
    """One pass of ``count`` images: its time and its exposed write time.

    ``before``: the previous pass's last segment's finish (0 for the first pass).
    Exposed writes: each segment's in-place writes and its wait for prefetched ones.
    """
    total = exposed = 0
    for seg in segments:
        wait = seg.wait_ns(before)
        total += seg.duration_ns(count, before)
        exposed += wait + seg.writes_end_ns()
        before = seg.schedule.finish_ns(count)
    return total, exposed


def _repeat_sum(counts: Sequence[tuple[int, int]], figure: Callable[[int, int], int]) -> int:
    """Sum ``figure`` over the passes, each distinct pass computed once."""
    done: dict[tuple[int, int], int] = {}
    for key in counts:
        if key not in done:
            done[key] = figure(*key)
    return sum(done[key] for key in counts)


def pipeline_write_ns(segments: Sequence[PipelineSegment], images: int,
                      micro_batch: int) -> dict[str, int]:
    """Write time of a segmented run: all of it, the exposed part and the hidden part.

    ``total_ns`` is what the writes would take one segment at a time with nothing
    overlapped (each segment's writes in parallel over its crossbars, then its images);
    ``exposed_ns`` what the run waits for them (in-place writes, waits for prefetched
    ones); ``hidden_ns`` the rest, overlapped with the previous segment's images.
    """
    counts = _passes(segments, images, micro_batch)
    per_pass = sum(max(seg.writes_end_ns(), seg.prefetch_end_ns()) for seg in segments)
    exposed = _repeat_sum(counts, lambda count, before: _pass_ns(segments, count, before)[1])
    total = len(counts) * per_pass
    return {"total_ns": total, "exposed_ns": exposed, "hidden_ns": total - exposed}
