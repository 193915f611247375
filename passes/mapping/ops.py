"""OPS: ENASA's operator-parallel scheduler, as software list scheduling.

The scheduler walks time forward over the group's deduplicated operator graph. At
each decision time every ready operator whose resources are free starts at once;
when resources conflict (crossbars to program in dynamic mode, or one weight
matrix wanted by several weight-shared operators) the candidates are admitted one
at a time in the order of :func:`rank_key`:

1. data reuse: how many already-admitted operators read the same input tensor (the
   input is fetched once for all of them);
2. same layer: how many already-admitted operators belong to the same supernet
   layer (different subnets' choices of one layer run side by side, which raises
   subnet concurrency);
3. critical path: the longest latency path from the operator to the end of the
   group (classic list-scheduling priority), so the first pick of a round is the
   most urgent operator;
4. topological index, so ties break the same way on every run.

Resident mode programs every tile once, all crossbars in parallel at time 0.
Dynamic mode programs an operator's missing tiles into free crossbars before it runs
and leaves them there after (released, but cached): a later operator with the same
weights reuses them without a write. When a free crossbar must be overwritten, one
whose tile no pending operator needs goes first, then the least recently used.
Writes are started ahead of time (prefetch): after each round, crossbars that are
empty or hold tiles no pending operator needs are written with the tiles of the
operators expected to run next (earliest as-soon-as-possible start first), so
programming overlaps computation instead of delaying every operator. Prefetch never
overwrites a tile that is still needed. Digital operators run on the first free
digital unit.

``policy="fcfs"`` replaces the ranking by first-come-first-served (topological
order among the ready operators): the ablation baseline that shows what the
ranking buys.
"""

from __future__ import annotations

import enum
import heapq
import logging
from collections.abc import Sequence

from enasa_compiler._gc import collector_paused
from enasa_compiler._text import plural
from enasa_compiler.errors import InputError
from enasa_compiler.ir import (
    ComputeEvent,
    CostTable,
    CrossbarProgram,
    DigitalOp,
    MappingMode,
    MvmOp,
    Op,
    Placement,
    ProgramEvent,
    Schedule,
)
from enasa_compiler.passes.price import price
from enasa_compiler.targets.target import Target

logger = logging.getLogger(__name__)

__all__ = [
    "MODES",
    "RankingPolicy",
    "Schedule",
    "crossbars_needed",
    "rank_key",
    "resolve_mode",
    "schedule_ops",
]

MODES = tuple(m.value for m in MappingMode)


class RankingPolicy(enum.StrEnum):
    """How OPS orders operators that compete for crossbars.

    ``OPS``: the paper's ranking (:func:`rank_key`: data reuse, same supernet layer,
    critical path). ``FCFS``: first come, first served (topological order), the
    ablation baseline for what the ranking buys.
    """

    OPS = "ops"
    FCFS = "fcfs"
# Prefetch looks this many operators ahead (in expected start order) each round.
_PREFETCH_WINDOW = 32


def crossbars_needed(program: CrossbarProgram) -> int:
    """Crossbars that hold every distinct weight tile of the group at once."""
    return sum(len(w.tiles) for w in program.weight_matrices())


def resolve_mode(program: CrossbarProgram, target: Target,
                 mode: MappingMode | str) -> MappingMode:
    """Pick resident or dynamic mapping, or explain why the requested one cannot work.

    Raises:
        InputError: unknown mode; resident requested but the weights do not fit; an
            operator that needs more crossbars than the chip has.

    """
    if mode not in MODES:
        raise InputError(f"unknown mapping mode '{mode}' (choose from {', '.join(MODES)})")
    mode = MappingMode(mode)
    needed = crossbars_needed(program)
    available = target.chip.crossbars
    largest = max((len(op.tiles) for op in program.mvm_ops()), default=0)
    if largest > available:
        raise InputError(
            f"an operator needs {largest} crossbars at once but target '{target.name}' has "
            f"{available}; the model does not fit the chip"
        )
    if mode == MappingMode.RESIDENT and needed > available:
        raise InputError(
            f"the group's weights need {needed} crossbars but target '{target.name}' has "
            f"{available}; use dynamic mapping"
        )
    if mode is MappingMode.AUTO:
        return MappingMode.RESIDENT if needed <= available else MappingMode.DYNAMIC
    return mode


def rank_key(
    op: Op, admitted: Sequence[Op], critical_path_ns: int, topo_index: int
) -> tuple[int, int, int, int]:
    """Sort key (larger first) of a candidate given the operators admitted so far."""
    inputs = set(op.inputs)
    reuse = sum(1 for other in admitted if inputs & set(other.inputs))
    same_layer = sum(1 for other in admitted if op.layer and other.layer == op.layer)
    return (reuse, same_layer, critical_path_ns, -topo_index)


def _earliest_starts(program: CrossbarProgram, latency: dict[str, int]) -> dict[str, int]:
    start: dict[str, int] = {}
    for op in program.ops:
        start[op.id] = max((start[d] + latency[d] for d in program.deps[op.id]), default=0)
    return start


def _critical_paths(program: CrossbarProgram, latency: dict[str, int]) -> dict[str, int]:
    successors: dict[str, list[str]] = {op.id: [] for op in program.ops}
    for op_id, deps in program.deps.items():
        for dep in deps:
            successors[dep].append(op_id)
    path: dict[str, int] = {}
    for op in reversed(program.ops):
        path[op.id] = latency[op.id] + max((path[s] for s in successors[op.id]), default=0)
    return path


class _Scheduler:
    """Mutable state of one scheduling run."""

    def __init__(self, program: CrossbarProgram, target: Target, costs: CostTable,
                 mode: MappingMode, initial: dict[int, str],
                 policy: RankingPolicy = RankingPolicy.OPS) -> None:
        self.program = program
        self.costs = costs
        self.ranked = policy is RankingPolicy.OPS
        self.target = target
        self.mode = mode
        self.initial = initial
        self.index = {op.id: i for i, op in enumerate(program.ops)}
        self.latency = {op.id: costs.latency_ns(op.id) for op in program.ops}
        self.critical = _critical_paths(program, self.latency)
        self.op_tiles = {op.id: op.tiles for op in program.mvm_ops()}
        self.earliest = _earliest_starts(program, self.latency)
        self.tiles = {t.id: t for w in program.weight_matrices() for t in w.tiles}
        self.crossbar_free_ns = [0] * target.chip.crossbars
        self.crossbar_tile: list[str | None] = [None] * target.chip.crossbars
        self.crossbar_last_use: list[int] = [-1] * target.chip.crossbars
        self.tile_home: dict[str, int] = {}
        self.unit_free_ns = [0] * target.chip.digital_units
        self.pending_users: dict[str, int] = {}
        for op in program.mvm_ops():
            for tile in op.tiles:
                self.pending_users[tile.id] = self.pending_users.get(tile.id, 0) + 1
        self.program_events: list[ProgramEvent] = []
        self.compute_events: list[ComputeEvent] = []

    # ---- resources ------------------------------------------------------------------
    def program_tile(self, tile_id: str, crossbar: int, start_ns: int) -> int:
        cost = self.costs.writes[tile_id]
        end_ns = start_ns + cost.latency_ns
        old = self.crossbar_tile[crossbar]
        if old is not None:
            del self.tile_home[old]
        self.crossbar_tile[crossbar] = tile_id
        self.tile_home[tile_id] = crossbar
        self.crossbar_free_ns[crossbar] = end_ns
        self.crossbar_last_use[crossbar] = end_ns
        self.program_events.append(ProgramEvent(tile_id, crossbar, start_ns, end_ns,
                                                cost.energy_pj))
        return end_ns

    def place_initial(self) -> None:
        """Start from crossbars that already hold some of this group's tiles."""
        for crossbar, tile_id in sorted(self.initial.items()):
            self.crossbar_tile[crossbar] = tile_id
            self.tile_home[tile_id] = crossbar

    def place_resident(self) -> None:
        occupied = set(self.tile_home.values())
        spare = (c for c in range(len(self.crossbar_tile)) if c not in occupied)
        for tile_id in self.tiles:
            if tile_id not in self.tile_home:
                self.program_tile(tile_id, next(spare), 0)

    def victims(self, now_ns: int, count: int, keep: set[int]) -> list[int] | None:
        """Free crossbars to overwrite, best first; None when too few are free."""
        free = [c for c in range(len(self.crossbar_tile))
                if self.crossbar_free_ns[c] <= now_ns and c not in keep]
        if len(free) < count:
            return None

        def eviction_order(crossbar: int) -> tuple[int, int, int]:
            tile = self.crossbar_tile[crossbar]
            if tile is None:
                return (0, 0, crossbar)
            still_needed = 1 if self.pending_users.get(tile, 0) > 0 else 0
            return (1 + still_needed, self.crossbar_last_use[crossbar], crossbar)

        return sorted(free, key=eviction_order)[:count]

    def fix_resident_homes(self) -> None:
        """Resident tiles never move: look each operator's crossbars up once."""
        self.resident_placements = {
            op_id: tuple(Placement(t.id, self.tile_home[t.id]) for t in tiles)
            for op_id, tiles in self.op_tiles.items()
        }

    def try_start_resident(self, op: MvmOp, now_ns: int) -> bool:
        placements = self.resident_placements[op.id]
        free_ns = self.crossbar_free_ns
        for placement in placements:
            if free_ns[placement.crossbar] > now_ns:
                return False
        end_ns = now_ns + self.latency[op.id]
        for placement in placements:
            free_ns[placement.crossbar] = end_ns
            self.crossbar_last_use[placement.crossbar] = end_ns
            self.pending_users[placement.tile] -= 1
        self.compute_events.append(ComputeEvent(op.id, now_ns, end_ns, placements))
        self.finish_at(op, end_ns)
        return True

    def try_start_mvm(self, op: MvmOp, now_ns: int) -> bool:
        if self.mode == MappingMode.RESIDENT:
            return self.try_start_resident(op, now_ns)
        placements: list[Placement] = []
        ready_ns = now_ns
        tiles = self.op_tiles[op.id]
        homes = {t.id: self.tile_home.get(t.id) for t in tiles}
        cached = {c for c in homes.values() if c is not None}
        if any(self.crossbar_free_ns[c] > now_ns for c in cached):
            return False
        missing = [tile_id for tile_id, home in homes.items() if home is None]
        if missing:
            if self.mode == MappingMode.RESIDENT:
                raise AssertionError(f"resident tile {missing[0]} has no crossbar")
            chosen = self.victims(now_ns, len(missing), cached)
            if chosen is None:
                return False
            for tile_id, crossbar in zip(missing, chosen, strict=True):
                ready_ns = max(ready_ns, self.program_tile(tile_id, crossbar, now_ns))
                homes[tile_id] = crossbar
        start_ns = max([ready_ns] + [self.crossbar_free_ns[c] for c in cached])
        end_ns = start_ns + self.latency[op.id]
        for tile in tiles:
            home = homes[tile.id]
            assert home is not None
            placements.append(Placement(tile.id, home))
            self.crossbar_free_ns[home] = end_ns
            self.crossbar_last_use[home] = end_ns
            self.pending_users[tile.id] -= 1
        self.compute_events.append(ComputeEvent(op.id, start_ns, end_ns, tuple(placements)))
        self.finish_at(op, end_ns)
        return True

    def try_start_digital(self, op: DigitalOp, now_ns: int) -> bool:
        unit = next((u for u, free in enumerate(self.unit_free_ns) if free <= now_ns), None)
        if unit is None:
            return False
        end_ns = now_ns + self.latency[op.id]
        self.unit_free_ns[unit] = end_ns
        self.compute_events.append(ComputeEvent(op.id, now_ns, end_ns, (), unit))
        self.finish_at(op, end_ns)
        return True

    def finish_at(self, op: Op, end_ns: int) -> None:
        heapq.heappush(self.completions, (end_ns, self.index[op.id], op.id))
        heapq.heappush(self.wakeups, end_ns)

    # ---- main loop ------------------------------------------------------------------
    def run(self) -> Schedule:
        self.place_initial()
        if self.mode == MappingMode.RESIDENT:
            self.place_resident()
            self.fix_resident_homes()
        successors: dict[str, list[str]] = {op.id: [] for op in self.program.ops}
        by_id = {op.id: op for op in self.program.ops}
        waiting_on = {op_id: len(deps) for op_id, deps in self.program.deps.items()}
        for op_id, deps in self.program.deps.items():
            for dep in deps:
                successors[dep].append(op_id)
        self.completions: list[tuple[int, int, str]] = []
        self.wakeups: list[int] = [0, *self.crossbar_free_ns]
        heapq.heapify(self.wakeups)
        ready = [op for op in self.program.ops if waiting_on[op.id] == 0]
        left = len(self.program.ops)
        upcoming = sorted(self.program.mvm_ops(),
                          key=lambda op: (self.earliest[op.id], self.index[op.id]))
        not_started = {op.id for op in upcoming}
        next_upcoming = 0  # upcoming[:next_upcoming] have all started
        while left:
            if not self.wakeups:
                raise AssertionError("scheduler stalled with operators left")
            now_ns = heapq.heappop(self.wakeups)
            while self.wakeups and self.wakeups[0] == now_ns:
                heapq.heappop(self.wakeups)
            while self.completions and self.completions[0][0] <= now_ns:
                _, _, done = heapq.heappop(self.completions)
                for successor in successors[done]:
                    waiting_on[successor] -= 1
                    if waiting_on[successor] == 0:
                        ready.append(by_id[successor])
            started = self.admit(ready, now_ns)
            if started:
                left -= len(started)
                ready = [op for op in ready if op.id not in started]
                not_started -= started
                while next_upcoming < len(upcoming) \
                        and upcoming[next_upcoming].id not in not_started:
                    next_upcoming += 1
            if self.mode == MappingMode.DYNAMIC:
                ready_ids = {op.id for op in ready}
                self.prefetch(upcoming[next_upcoming:], not_started - ready_ids, now_ns)
        return Schedule(self.mode, tuple(self.program_events),
                        tuple(sorted(self.compute_events,
                                     key=lambda e: (e.start_ns, self.index[e.op]))),
                        tuple(Placement(t, c) for c, t in sorted(self.initial.items())))

    def prefetch(self, upcoming: list[MvmOp], eligible: set[str], now_ns: int) -> None:
        """Write the tiles of operators expected next into crossbars nobody needs.

        Looks at the next ``_PREFETCH_WINDOW`` eligible operators in expected start
        order, so a round costs the same however large the group is.
        """
        window = []
        for op in upcoming:
            if op.id in eligible:
                window.append(op)
                if len(window) == _PREFETCH_WINDOW:
                    break
        waiting = [op for op in window
                   if any(t.id not in self.tile_home for t in self.op_tiles[op.id])]
        if not waiting:
            return
        spare = [c for c in range(len(self.crossbar_tile))
                 if self.crossbar_free_ns[c] <= now_ns
                 and (self.crossbar_tile[c] is None
                      or self.pending_users.get(self.crossbar_tile[c] or "", 0) == 0)]
        spare.sort(key=lambda c: (self.crossbar_tile[c] is not None, c))
        for op in waiting:
            missing = [t.id for t in self.op_tiles[op.id] if t.id not in self.tile_home]
            if not missing:
                continue  # written for an earlier operator in this round
            if len(missing) > len(spare):
                return  # keep the order: a later operator must not jump the queue
            for tile_id in missing:
                end_ns = self.program_tile(tile_id, spare.pop(0), now_ns)
                heapq.heappush(self.wakeups, end_ns)

    def admit(self, ready: list[Op], now_ns: int) -> set[str]:
        """Start ready operators in rank order; each admission updates the ranking.

        The order is exactly the one ``rank_key`` defines (recomputed after every
        admission), kept incrementally: admitting an operator raises the reuse count
        of the candidates that read one of its inputs and the same-layer count of
        the candidates of its layer. The candidates sit in a heap whose stale entries
        (pushed before a count rose) are skipped when popped, so a round costs
        O(log candidates) per admission and per raised count instead of a scan of all
        candidates per admission. Operator indices are unique, so no two candidates
        tie and the order is the one a full re-sort gives.
        """
        started: set[str] = set()
        candidates = {op.id: op for op in ready}
        reuse = dict.fromkeys(candidates, 0)
        same_layer = dict.fromkeys(candidates, 0)
        readers: dict[str, list[str]] = {}
        layer_members: dict[str, list[str]] = {}
        for op in ready:
            for name in set(op.inputs):
                readers.setdefault(name, []).append(op.id)
            if op.layer:
                layer_members.setdefault(op.layer, []).append(op.id)
        # Largest (reuse, same layer, critical path, -index) first: a min-heap of the
        # negated keys; FCFS ranks by topological order alone.
        heap: list[tuple[int, int, float, int, str]] = [
            (0, 0, -self.critical[op.id] if self.ranked else 0, self.index[op.id], op.id)
            for op in ready]
        heapq.heapify(heap)
        while heap:
            minus_reuse, minus_same, _, _, best = heapq.heappop(heap)
            chosen = candidates.get(best)
            if chosen is None or (self.ranked and (-minus_reuse != reuse[best]
                                                   or -minus_same != same_layer[best])):
                continue  # admitted already, or an entry from before a count rose
            del candidates[best]
            op = chosen
            ok = (self.try_start_mvm(op, now_ns) if isinstance(op, MvmOp)
                  else self.try_start_digital(op, now_ns))
            if not ok:
                continue
            started.add(op.id)
            if not self.ranked:
                continue
            raised: set[str] = set()  # candidates whose reuse or same-layer count rose
            for name in set(op.inputs):
                raised.update(readers[name])
            for other in raised:
                reuse[other] += 1
            if op.layer:
                for other in layer_members[op.layer]:
                    same_layer[other] += 1
                raised.update(layer_members[op.layer])
            for other in raised:
                if other in candidates:
                    heapq.heappush(heap, (-reuse[other], -same_layer[other],
                                          -self.critical[other], self.index[other], other))
        return started


def schedule_ops(
    program: CrossbarProgram,
    target: Target,
    mode: MappingMode | str = MappingMode.AUTO,
    initial: dict[int, str] | None = None,
    policy: RankingPolicy | str = RankingPolicy.OPS,
    costs: CostTable | None = None,
) -> Schedule:
    """Map a crossbar program onto the target with OPS.

    Args:
        program: the lowered group.
        target: the chip (crossbar count, digital units, timing).
        mode: ``resident``, ``dynamic`` or ``auto`` (resident when the weights fit).
        initial: online mapping: crossbar -> id of a tile of *this* program that the
            crossbar already holds (left there by the previous group's plan); such
            tiles are used in place, not written again.
        policy: ``ops`` ranks conflicting operators by :func:`rank_key`; ``fcfs``
            admits them in topological order (the ablation baseline).
        costs: the program priced on the target (:func:`~.price.price`); priced
            here when not given.

    Returns:
        The schedule: every tile's programming on a concrete crossbar and every
        operator's compute interval.

    """
    if policy not in tuple(RankingPolicy):
        raise ValueError(f"unknown OPS policy {policy!r}; expected 'ops' or 'fcfs'")
    policy = RankingPolicy(policy)
    resolved = resolve_mode(program, target, mode)
    # Scheduling allocates tens of thousands of small event objects; a cyclic-GC
    # pass over a heap that still holds the group's ONNX models costs more than the
    # scheduling itself (seen as 40-ms outliers on 16-subnet groups). Nothing here
    # makes reference cycles, so collection waits until the schedule is built.
    with collector_paused():
        schedule = _Scheduler(program, target, costs or price(program, target), resolved,
                              dict(initial or {}), policy).run()
    logger.info("OPS %s: %s, %s", resolved, plural(len(schedule.compute), "compute event"),
                plural(len(schedule.program), "program event"))
    return schedule
