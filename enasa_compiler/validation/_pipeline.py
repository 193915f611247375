"""Checks of a plan's pipelined (periodic) schedule, by the validator's own route.

Image ``i`` of operator ``o`` runs during ``[offset(o) + i II, offset(o) + duration(o)
+ i II)``. Because every operator repeats with the same period, two operators collide
on a crossbar or digital unit for some pair of images exactly when their intervals
collide modulo II, and an operator collides with itself when its duration exceeds II;
so checking one period covers every image, whatever the number of images. The
checks re-derive what the section claims from the plan's operators, tiles and target:

* every operator has exactly one slot; an MVM slot places each tile of the operator's
  weights exactly once, on the crossbar the programming put it on before the first
  image (``start_ns`` is after every programming event); a digital slot names between
  1 and ``chip.digital_lanes_per_op`` distinct units below ``chip.digital_units``;
* each slot lasts at least the cost model's per-image latency (MVM on its copies,
  digital on its lanes) and at most II;
* per-image dependencies: an operator starts no earlier than each producer's finish;
* no crossbar and no digital unit serves two slots at once modulo II (a sweep);
* the recorded II bound is the one its durations give and is not above II, the gap
  matches, and ``best_ii_ns`` is not above the bound;
* prefetched writes (segmented plans) go into crossbars the previous segment neither
  computes on nor writes, and not where the segment writes in place; the totals charge
  a segment's wait for them, so a total that hides more than they allow does not match;
* the totals equal :func:`~enasa_compiler.plan.totals.compute_pipeline_totals` on the
  slots, with energies re-priced per image.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterator

from enasa_compiler.ir import DigitalOp, OpKind, PeriodicSlot, PipelineSegment, ProgramEvent
from enasa_compiler.passes.price import price_operators
from enasa_compiler.plan.totals import compute_pipeline_totals, crossing_bytes
from enasa_compiler.targets.cost import digital_lanes_ns
from enasa_compiler.validation._checks import (
    DEPENDENCY,
    DOUBLE_BOOKED,
    DURATION,
    PIPELINE,
    TOTALS,
    Holdings,
    PlanIndex,
    Violation,
    close_enough,
    compare_totals,
)

logger = logging.getLogger(__name__)

__all__ = ["check_pipeline"]


def _segments(slot: PeriodicSlot, ii: int) -> list[tuple[int, int]]:
    """Return the slot's busy time within one period: one or two plain segments."""
    phase = slot.offset_ns % ii
    end = phase + slot.duration_ns
    return [(phase, end)] if end <= ii else [(phase, ii), (0, end - ii)]


def _modulo_overlaps(resource: str, slots: list[PeriodicSlot],
                     ii: int) -> Iterator[Violation]:
    """Report slots that overlap another on one resource, modulo II (a sweep)."""
    pieces = sorted((start, end, slot.op) for slot in slots
                    for start, end in _segments(slot, ii))
    latest: tuple[int, int, str] | None = None
    for piece in pieces:
        if latest is not None and piece[0] < latest[1]:
            yield Violation(DOUBLE_BOOKED, f"{resource}: operators '{latest[2]}' and "
                                           f"'{piece[2]}' overlap modulo II {ii} ns (phases "
                                           f"[{latest[0]}, {latest[1]}) and [{piece[0]}, "
                                           f"{piece[1]}))")
        if latest is None or piece[1] > latest[1]:
            latest = piece


def check_pipeline(index: PlanIndex) -> Iterator[Violation]:
    """Check the plan's ``pipeline`` section (nothing to check when it has none)."""
    plan, target = index.plan, index.target
    pipeline = plan.pipeline
    if pipeline is None:
        return
    if pipeline.images != pipeline.totals.images:
        yield Violation(PIPELINE, f"pipeline.images {pipeline.images} differs from "
                                  f"pipeline.totals.images {pipeline.totals.images}")
    if pipeline.micro_batch > pipeline.images:
        yield Violation(PIPELINE, f"pipeline.micro_batch {pipeline.micro_batch} exceeds the "
                                  f"{pipeline.images} images")
    resident = plan.mode == "resident"
    if resident:
        if len(pipeline.segments) != 1 or pipeline.segments[0].writes:
            yield Violation(PIPELINE, "a resident plan's pipeline is one segment without "
                                      "writes (its tiles are programmed once, before it)")
            return
        if pipeline.micro_batch != pipeline.images:
            yield Violation(PIPELINE, "a resident pipeline runs all its images as one "
                                      "micro-batch")
        programmed_end = max((e.end_ns for e in plan.program), default=0)
        if pipeline.start_ns < programmed_end:
            yield Violation(PIPELINE, f"pipeline.start_ns {pipeline.start_ns} is before the "
                                      f"programming ends ({programmed_end} ns)")
        holder = Holdings(index.tiles)
        written = {e.crossbar for e in plan.program}
        for held in plan.initial:
            if held.crossbar not in written:
                holder.place(held.crossbar, held.tile)
        for write in sorted(plan.program, key=lambda e: e.end_ns):
            holder.apply(write)
    else:
        holder = Holdings(index.tiles)  # every pass writes what its segments need
    segment_of: dict[str, int] = {}
    slots: dict[str, PeriodicSlot] = {}
    for position, segment in enumerate(pipeline.segments):
        for slot in segment.schedule.slots:
            if slot.op in slots:
                yield Violation(PIPELINE, f"operator '{slot.op}' has two pipeline slots")
            elif slot.op not in index.ops:
                yield Violation(PIPELINE, f"pipeline slot names unknown operator '{slot.op}'")
            else:
                slots[slot.op] = slot
                segment_of[slot.op] = position
    for op_id in index.ops:
        if op_id not in slots:
            yield Violation(PIPELINE, f"operator '{op_id}' has no pipeline slot")
    for event in plan.program:
        if event.prefetch:
            yield Violation(PIPELINE, f"programming event of tile '{event.tile}' is marked "
                                      "prefetch outside a segmented pipeline")
    for position, segment in enumerate(pipeline.segments):
        where = f"segment {position}" if len(pipeline.segments) > 1 else "pipeline"
        in_place = tuple(w for w in segment.writes if not w.prefetch)
        prefetched = tuple(w for w in segment.writes if w.prefetch)
        yield from _check_writes(index, in_place, where)
        if prefetched:
            yield from _check_writes(index, prefetched, f"{where} (prefetched)")
            yield from _check_prefetch(pipeline.segments, position, resident)
        for write in sorted(segment.writes, key=lambda w: w.end_ns):
            holder.apply(write)
        mine = {slot.op: slot for slot in segment.schedule.slots if slot.op in slots
                and segment_of[slot.op] == position}
        yield from _check_slot_resources(index, mine, holder)
        yield from _check_slot_times(index, mine, segment.schedule.ii_ns,
                                     segment.writes_end_ns(), segment_of, position)
        by_crossbar: dict[int, list[PeriodicSlot]] = defaultdict(list)
        by_unit: dict[int, list[PeriodicSlot]] = defaultdict(list)
        for slot in mine.values():
            for crossbar in {p.crossbar for p in slot.placements}:
                by_crossbar[crossbar].append(slot)
            for unit in set(slot.units):
                by_unit[unit].append(slot)
        ii = segment.schedule.ii_ns
        for crossbar, busy in sorted(by_crossbar.items()):
            if len(busy) > 1:
                yield from _modulo_overlaps(f"{where}, crossbar {crossbar}", busy, ii)
        for unit, busy in sorted(by_unit.items()):
            if len(busy) > 1:
                yield from _modulo_overlaps(f"{where}, digital unit {unit}", busy, ii)
    if (target is not None and len(slots) == len(pipeline.slots())
            and set(slots) == set(index.ops)):
        yield from _check_pipeline_figures(index, slots, segment_of)


def _check_prefetch(segments: tuple[PipelineSegment, ...], position: int,
                    resident: bool) -> Iterator[Violation]:
    """Prefetched writes go where the previous segment neither computes nor writes.

    They run while the previous segment (the last one of the previous pass for the
    first) computes; the totals charge the wait for them (``PipelineSegment.wait_ns``).
    A segment's in-place and prefetched writes use distinct crossbars.
    """
    segment = segments[position]
    if resident or len(segments) < 2:
        yield Violation(PIPELINE, "prefetched writes need a previous segment: only a "
                                  "segmented pipeline of two or more segments has them")
        return
    previous = segments[position - 1]
    busy = {p.crossbar for slot in previous.schedule.slots for p in slot.placements}
    busy |= {w.crossbar for w in previous.writes}
    in_place = {w.crossbar for w in segment.writes if not w.prefetch}
    before = (position - 1) % len(segments)
    for write in segment.writes:
        if not write.prefetch:
            continue
        if write.crossbar in busy:
            yield Violation(DOUBLE_BOOKED, f"segment {position} prefetches tile "
                                           f"'{write.tile}' into crossbar {write.crossbar} "
                                           f"while segment {before}, which uses it, runs")
        if write.crossbar in in_place:
            yield Violation(DOUBLE_BOOKED, f"segment {position} writes crossbar "
                                           f"{write.crossbar} both in place and prefetched")


def _check_writes(index: PlanIndex, writes: tuple[ProgramEvent, ...],
                  where: str) -> Iterator[Violation]:
    target = index.target
    by_crossbar: dict[int, list[ProgramEvent]] = defaultdict(list)
    for write in writes:
        tile = index.tiles.get(write.tile)
        if tile is None:
            yield Violation(PIPELINE, f"{where} writes unknown tile '{write.tile}'")
            continue
        if target is not None and write.crossbar >= target.chip.crossbars:
            yield Violation(PIPELINE, f"{where} writes crossbar {write.crossbar}, beyond the "
                                      f"chip's {target.chip.crossbars}")
        by_crossbar[write.crossbar].append(write)
        cost = index.write_costs.get(write.tile)
        if cost is None:
            continue
        if write.end_ns - write.start_ns < cost.latency_ns:
            yield Violation(DURATION, f"{where}: writing tile '{write.tile}' takes "
                                      f"{write.end_ns - write.start_ns} ns, the cost model "
                                      f"needs {cost.latency_ns} ns")
        if not close_enough(write.energy_pj, cost.energy_pj, 1):
            yield Violation(DURATION, f"{where}: writing tile '{write.tile}' costs "
                                      f"{write.energy_pj} pJ, the cost model gives "
                                      f"{cost.energy_pj:.3f}")
    for crossbar, events in by_crossbar.items():
        events.sort(key=lambda w: w.start_ns)
        for first, second in zip(events, events[1:], strict=False):
            if second.start_ns < first.end_ns:
                yield Violation(DOUBLE_BOOKED, f"{where}, crossbar {crossbar}: writes of "
                                               f"'{first.tile}' and '{second.tile}' overlap")


def _check_slot_resources(index: PlanIndex, slots: dict[str, PeriodicSlot],
                          holder: Holdings) -> Iterator[Violation]:
    target = index.target
    for op_id, slot in slots.items():
        op = index.ops[op_id]
        where = f"pipeline slot of '{op_id}'"
        if op.kind is OpKind.MVM:
            if slot.units:
                yield Violation(PIPELINE, f"{where}: an MVM operator names digital units")
            placed = [p.tile for p in slot.placements]
            if sorted(placed) != sorted(index.expected_tiles(op)):
                yield Violation(PIPELINE, f"{where} does not place each tile of its weights "
                                          "exactly once")
            crossbars = [p.crossbar for p in slot.placements]
            if len(set(crossbars)) != len(crossbars):
                yield Violation(PIPELINE, f"{where} puts two tiles on one crossbar")
            for p in slot.placements:
                if not holder.holds(p.crossbar, p.tile):
                    yield Violation(PIPELINE, f"{where}: crossbar {p.crossbar} holds "
                                              f"{holder.describe(p.crossbar)}, not tile "
                                              f"'{p.tile}', when the images run")
            continue
        if slot.placements:
            yield Violation(PIPELINE, f"{where}: a digital operator places tiles")
        lanes = target.chip.digital_lanes_per_op if target is not None else None
        if not slot.units or len(set(slot.units)) != len(slot.units) or (
                lanes is not None and len(slot.units) > lanes):
            yield Violation(PIPELINE, f"{where} uses {len(slot.units)} digital units "
                                      f"{list(slot.units)}: needs 1 to {lanes} distinct ones")
        if target is not None and any(u >= target.chip.digital_units for u in slot.units):
            yield Violation(PIPELINE, f"{where} names a digital unit beyond the chip's "
                                      f"{target.chip.digital_units}")


def _check_slot_times(index: PlanIndex, slots: dict[str, PeriodicSlot], ii: int,
                      start_ns: int, segment_of: dict[str, int],
                      position: int) -> Iterator[Violation]:
    for op_id, slot in slots.items():
        if slot.duration_ns > ii:
            yield Violation(DURATION, f"pipeline slot of '{op_id}' lasts {slot.duration_ns} "
                                      f"ns, longer than II {ii} ns")
        if slot.offset_ns < start_ns:
            yield Violation(DEPENDENCY, f"pipeline slot of '{op_id}' starts at "
                                        f"{slot.offset_ns} ns, before the weights are in "
                                        f"place ({start_ns} ns)")
        op = index.ops[op_id]
        producers = set(op.deps) | {index.producers[v] for v in op.inputs
                                    if v in index.producers}
        for dep in sorted(producers - {op_id}):
            if segment_of.get(dep, position) > position:
                yield Violation(DEPENDENCY, f"operator '{op_id}' runs in segment {position}, "
                                            f"before '{dep}' (segment {segment_of[dep]}) "
                                            "makes its input")
                continue
            before = slots.get(dep)
            if before is not None and slot.offset_ns < before.offset_ns + before.duration_ns:
                yield Violation(DEPENDENCY, f"pipeline slot of '{op_id}' starts at "
                                            f"{slot.offset_ns} ns, before '{dep}' finishes "
                                            f"the same image at "
                                            f"{before.offset_ns + before.duration_ns} ns")


def _check_pipeline_figures(index: PlanIndex, slots: dict[str, PeriodicSlot],
                            segment_of: dict[str, int]) -> Iterator[Violation]:
    """Durations against the cost model, the II bound, and the totals."""
    plan, target = index.plan, index.target
    assert target is not None and plan.pipeline is not None
    pipeline = plan.pipeline
    priceable = [plan.to_ir_op(op) for op in index.ops.values() if index.priceable(op)]
    per_image = price_operators(priceable, (), target, 1).operators
    energy_pj = 0.0
    needed: dict[str, int] = {}
    for op in priceable:
        slot = slots[op.id]
        cost = per_image[op.id]
        energy_pj += cost.energy_pj
        if isinstance(op, DigitalOp):
            if not slot.units:
                continue
            needed[op.id] = digital_lanes_ns(op, target, len(slot.units))
        else:
            needed[op.id] = cost.latency_ns
        if slot.duration_ns < needed[op.id]:
            yield Violation(DURATION, f"pipeline slot of '{op.id}' lasts {slot.duration_ns} "
                                      f"ns, the cost model needs {needed[op.id]} ns per image")
    total_bound = 0
    for position, segment in enumerate(pipeline.segments):
        per_crossbar: dict[int, int] = defaultdict(int)
        lane_ns = 0
        longest = 0
        for slot in segment.schedule.slots:
            if segment_of.get(slot.op) != position:
                continue
            duration = needed.get(slot.op, slot.duration_ns)
            longest = max(longest, duration)
            for crossbar in {p.crossbar for p in slot.placements}:
                per_crossbar[crossbar] += duration
            lane_ns += len(slot.units) * duration
        bound = max(max(per_crossbar.values(), default=0),
                    math.ceil(lane_ns / target.chip.digital_units), longest, 1)
        total_bound += bound
        if segment.schedule.ii_ns < bound:
            yield Violation(DURATION, f"II {segment.schedule.ii_ns} ns"
                            + (f" of segment {position}" if len(pipeline.segments) > 1
                               else "") + f" is below the resource bound {bound} ns")
    bounds = pipeline.bounds
    if bounds["ii_lower_bound_ns"] != total_bound:
        yield Violation(TOTALS, f"pipeline.bounds.ii_lower_bound_ns is "
                                f"{bounds['ii_lower_bound_ns']}, the slots' work gives "
                                f"{total_bound}")
    sum_ii = sum(seg.schedule.ii_ns for seg in pipeline.segments)
    gap = (sum_ii - bounds["ii_lower_bound_ns"]) / sum_ii
    if not math.isclose(bounds["gap"], gap, rel_tol=1e-9, abs_tol=1e-12):
        yield Violation(TOTALS, f"pipeline.bounds.gap is {bounds['gap']}, II and bound give "
                                f"{gap}")
    if bounds["best_ii_ns"] > bounds["ii_lower_bound_ns"]:
        yield Violation(TOTALS, f"pipeline.bounds.best_ii_ns {bounds['best_ii_ns']} exceeds "
                                f"the plan's own bound {bounds['ii_lower_bound_ns']}")
    yield from _check_packing_bounds(index)
    moved = crossing_bytes(plan.operators, index.weights, segment_of,
                           target.precision.a_bits)
    derived = compute_pipeline_totals(
        images=pipeline.images, micro_batch=pipeline.micro_batch,
        start_ns=pipeline.start_ns, segments=pipeline.segments, image_energy_pj=energy_pj,
        program=plan.program if plan.mode == "resident" else (),
        moved_bytes_per_image=moved, chip=target.chip)
    if derived.offchip_bytes and target.chip.offchip_gb_per_s <= 0:
        yield Violation(PIPELINE, "activations between segments overflow the buffer and "
                                  "the target has no off-chip memory")
    # Compute energy is summed unrounded on both sides; each stored total is rounded
    # once, and the write energy sums rounded programming events (every pass's).
    passes = -(-pipeline.images // pipeline.micro_batch)
    writes = len(plan.program) + passes * sum(len(seg.writes) for seg in pipeline.segments)
    rounded = {"compute_energy_pj": 1, "write_energy_pj": writes + 1,
               "offchip_energy_pj": 1, "energy_pj": writes + 3}
    yield from compare_totals(pipeline.totals, derived, "pipeline.totals", "the slots",
                              rounded)


def _check_packing_bounds(index: PlanIndex) -> Iterator[Violation]:
    """Re-derive a packed resident plan's ``unpacked_crossbars`` and its lower bound.

    Unpacked, every tile written has a crossbar of its own. The bound: a full-size
    tile shares with nothing; the other tiles need their summed busy time per period
    (the union of their slots' phases) over II crossbars, and their cells over a
    crossbar's.
    """
    plan, target = index.plan, index.target
    pipeline = plan.pipeline
    assert target is not None and pipeline is not None
    bounds = pipeline.bounds
    if "unpacked_crossbars" not in bounds and "packed_crossbars_lower_bound" not in bounds:
        return
    if plan.mode != "resident" or len(pipeline.segments) != 1:
        yield Violation(PIPELINE, "packing bounds in a plan that is not a resident pipeline")
        return
    if bounds.get("unpacked_crossbars", len(plan.program)) != len(plan.program):
        yield Violation(TOTALS, f"pipeline.bounds.unpacked_crossbars is "
                                f"{bounds['unpacked_crossbars']}, the {len(plan.program)} "
                                "tiles written had a crossbar each")
    claimed = bounds.get("packed_crossbars_lower_bound")
    if claimed is None:
        return
    schedule = pipeline.schedule
    ii = schedule.ii_ns
    pieces: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for slot in schedule.slots:
        for p in slot.placements:
            pieces[p.tile].extend(_segments(slot, ii))
    rows, cols = target.crossbar.rows, target.crossbar.cols
    full = small_ns = small_cells = 0
    for write in plan.program:
        tile = index.tiles.get(write.tile)
        if tile is None:
            continue
        if tile.phys_rows >= rows and tile.phys_cols >= cols:
            full += 1
            continue
        small_cells += tile.cells
        covered = 0
        reach = -1
        for start, end in sorted(pieces.get(write.tile, [])):
            if end > reach:
                covered += end - max(start, reach)
                reach = end
        small_ns += covered
    bound = full + (max(1, math.ceil(small_ns / ii), math.ceil(small_cells / (rows * cols)))
                    if small_cells else 0)
    if claimed != bound:
        yield Violation(TOTALS, f"pipeline.bounds.packed_crossbars_lower_bound is {claimed}, "
                                f"the tiles' cells and busy phases give {bound}")
