"""An exact (or anytime) CP-SAT model of the group schedule.

The model answers how good an OPS plan is, and improves it when time allows.

Variables and constraints, in time units of ``unit_ns`` (durations rounded *up*, so a
schedule feasible in units stays feasible in nanoseconds):

* one interval per operator execution, with its cost-model latency;
* precedence: an operator starts after every operator it depends on ends;
* operators sharing a weight matrix (weight-shared operators of different subnets)
  never overlap: its tiles are time-multiplexed;
* digital operators: a cumulative resource of ``digital_units``;
* resident mode: every tile is written at time 0, all crossbars in parallel (as OPS
  does), and a crossbar operator starts after its tiles are written; tiles already
  in place (online mapping, ``initial``) keep their crossbar and are not written;
* dynamic mode: each weight matrix is either *kept* (written once into free
  crossbars and held from the start of that write until its last user ends) or
  *rewritten* (written before each user and held until that user ends); the holds of
  all matrices share the chip's crossbars (cumulative). Concrete crossbar ids are
  assigned after solving (always possible for a cumulative schedule).

Objective: makespan, then cell writes (energy and wear) among equally fast schedules.
The OPS schedule is given as a hint. The dynamic optimum is optimal among schedules
of that kept-or-rewritten form; OPS caches and evicts more freely (a tile rewritten
for some users and reused by others), so it can in principle beat it, and the
analytic bound of :mod:`.bounds` is the one that holds for every schedule.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from ortools.sat.python import cp_model

from enasa_compiler.errors import InputError
from enasa_compiler.ir import (
    ComputeEvent,
    CostTable,
    CrossbarProgram,
    MappingMode,
    MvmOp,
    Placement,
    ProgramEvent,
    Schedule,
)
from enasa_compiler.passes.mapping.ops import resolve_mode
from enasa_compiler.passes.price import price
from enasa_compiler.targets.target import Target

logger = logging.getLogger(__name__)

__all__ = ["CpSatResult", "choose_time_unit", "schedule_cpsat"]

# Durations stay in nanoseconds (unit 1) unless the longest operator exceeds this many
# units: CP-SAT's propagation does not care how large the numbers are, an exact unit
# keeps the OPS hint feasible and the solver's bound valid, while rounding durations up
# to a coarser unit cost up to a few percent of makespan on real groups.
_UNITS_PER_LONGEST_OP = 100_000_000
# In deterministic mode the limit is CP-SAT's deterministic time; a wall-clock cap of
# this many times the limit keeps a slow machine from running far past it.
_WALL_CAP_FACTOR = 4.0


@dataclass(frozen=True)
class CpSatResult:
    """A CP-SAT schedule and what the solver proved about it.

    Attributes:
        schedule: the schedule, in nanoseconds.
        status: ``OPTIMAL``, ``FEASIBLE`` (time ran out), or ``UNKNOWN`` (no solution).
        makespan_ns: the schedule's makespan.
        solver_bound_ns: the solver's lower bound, converted to ns; a bound for the
            rounded-duration model, so a true lower bound only when ``unit_ns == 1``.
        unit_ns: the model's time unit.
        wall_s: solver wall time.

    """

    schedule: Schedule | None
    status: str
    makespan_ns: int | None
    solver_bound_ns: int
    unit_ns: int
    wall_s: float


def choose_time_unit(durations_ns: list[int]) -> int:
    """Pick a power-of-ten unit so the longest duration spans at most 1e8 units."""
    longest = max(durations_ns, default=1)
    if longest <= _UNITS_PER_LONGEST_OP:
        return 1
    return 10 ** math.ceil(math.log10(longest / _UNITS_PER_LONGEST_OP))


class _Model:
    """Builds the CP-SAT model for one program, mode and time unit."""

    def __init__(self, program: CrossbarProgram, target: Target, costs: CostTable,
                 mode: str, unit_ns: int, horizon: int,
                 initial: dict[int, str] | None = None) -> None:
        self.program, self.target, self.mode = program, target, mode
        self.costs = costs
        self.initial = dict(initial or {})
        in_place = set(self.initial.values())
        self.unit = unit_ns
        self.model = cp_model.CpModel()
        self.latency_ns = {op.id: costs.latency_ns(op.id) for op in program.ops}
        self.matrices = program.weight_matrices()
        self.program_ns = {
            w.id: max((costs.write_ns(t.id) for t in w.tiles if t.id not in in_place),
                      default=0)
            for w in self.matrices}
        m = self.model
        self.start: dict[str, cp_model.IntVar] = {}
        self.interval: dict[str, cp_model.IntervalVar] = {}
        self.makespan = m.new_int_var(0, horizon, "makespan")
        for op in program.ops:
            size = self.units(self.latency_ns[op.id])
            start = m.new_int_var(0, horizon - size, f"s[{op.id}]")
            self.start[op.id] = start
            self.interval[op.id] = m.new_fixed_size_interval_var(start, size, f"i[{op.id}]")
            m.add(self.makespan >= start + size)
            for dep in program.deps[op.id]:
                m.add(start >= self.start[dep] + self.units(self.latency_ns[dep]))
        users: dict[str, list[str]] = {w.id: [] for w in self.matrices}
        for op in program.mvm_ops():
            for matrix in op.weights:
                users[matrix.id].append(op.id)
        for ops in users.values():
            if len(ops) > 1:
                m.add_no_overlap([self.interval[o] for o in ops])
        digital = [self.interval[op.id] for op in program.ops if not isinstance(op, MvmOp)]
        if digital:
            m.add_cumulative(digital, [1] * len(digital), target.chip.digital_units)
        # Dynamic mode: write start per (matrix, None) for a kept matrix or per
        # (matrix, operator) for a rewritten one; whether each matrix is kept; and the
        # cells each choice writes (the secondary objective).
        self.program_start: dict[tuple[str, str | None], cp_model.IntVar] = {}
        self.keep: dict[str, cp_model.IntVar] = {}
        self.writes: list[tuple[int, cp_model.LiteralT]] = []
        if mode == MappingMode.RESIDENT:
            for matrix in self.matrices:
                for op_id in users[matrix.id]:
                    m.add(self.start[op_id] >= self.units(self.program_ns[matrix.id]))
        else:
            self.add_dynamic_holds(users, horizon)
        # Makespan first; among equally fast schedules, fewer cell writes.
        max_writes = sum(cells for cells, _ in self.writes) + 1
        self.objective_scale = max_writes
        cells_written = cp_model.LinearExpr.weighted_sum(
            [lit for _, lit in self.writes], [c for c, _ in self.writes])
        m.minimize(self.makespan * max_writes + cells_written)

    def units(self, value_ns: int) -> int:
        return math.ceil(value_ns / self.unit)

    def add_dynamic_holds(self, users: dict[str, list[str]], horizon: int) -> None:
        """Each matrix is either kept (written once, held to its last use) or rewritten.

        A kept matrix has one hold; a rewritten one has a hold per user, from its
        write to that user's end. Exactly one of the two is present, so the model is
        always feasible (every operator fits the chip alone).
        """
        m = self.model
        holds, demands = [], []
        for matrix in self.matrices:
            write = self.units(self.program_ns[matrix.id])
            keep = m.new_bool_var(f"keep[{matrix.id}]")
            self.keep[matrix.id] = keep
            begin, end, interval = self.optional_hold(f"{matrix.id}", write, horizon, keep)
            holds.append(interval)
            demands.append(len(matrix.tiles))
            self.program_start[(matrix.id, None)] = begin
            for op_id in users[matrix.id]:
                size = self.units(self.latency_ns[op_id])
                m.add(self.start[op_id] >= begin + write).only_enforce_if(keep)
                m.add(end >= self.start[op_id] + size).only_enforce_if(keep)
                own_begin, own_end, own = self.optional_hold(
                    f"{matrix.id}@{op_id}", write, horizon, ~keep)
                holds.append(own)
                demands.append(len(matrix.tiles))
                self.program_start[(matrix.id, op_id)] = own_begin
                m.add(self.start[op_id] >= own_begin + write).only_enforce_if(~keep)
                m.add(own_end == self.start[op_id] + size).only_enforce_if(~keep)
                self.writes.append((len(matrix.tiles) * matrix.cells, ~keep))
            self.writes.append((matrix.cells, keep))
        m.add_cumulative(holds, demands, self.target.chip.crossbars)

    def optional_hold(
        self, name: str, write: int, horizon: int, present: cp_model.LiteralT
    ) -> tuple[cp_model.IntVar, cp_model.IntVar, cp_model.IntervalVar]:
        m = self.model
        begin = m.new_int_var(0, horizon - write, f"p[{name}]")
        end = m.new_int_var(0, horizon, f"h[{name}]")
        length = m.new_int_var(write, horizon, f"l[{name}]")
        interval = m.new_optional_interval_var(begin, length, end, present, f"hold[{name}]")
        return begin, end, interval

    def hint(self, schedule: Schedule) -> None:
        for event in schedule.compute:
            self.model.add_hint(self.start[event.op], event.start_ns // self.unit)
        if self.mode == MappingMode.DYNAMIC:
            writes: dict[str, list[int]] = {}
            for program_event in schedule.program:
                writes.setdefault(program_event.tile, []).append(program_event.start_ns)
            starts = {e.op: e.start_ns for e in schedule.compute}
            for matrix in self.matrices:
                once = all(len(writes.get(t.id, [])) <= 1 for t in matrix.tiles)
                self.model.add_hint(self.keep[matrix.id], once)
                first = min((s for t in matrix.tiles for s in writes.get(t.id, [])), default=0)
                write = self.units(self.program_ns[matrix.id])
                for (matrix_id, op_id), var in self.program_start.items():
                    if matrix_id != matrix.id:
                        continue
                    if op_id is None:
                        self.model.add_hint(var, first // self.unit)
                    else:
                        self.model.add_hint(var, max(0, starts[op_id] // self.unit - write))

    def extract(self, solver: cp_model.CpSolver) -> Schedule:
        start_ns = {op_id: solver.value(var) * self.unit for op_id, var in self.start.items()}
        compute: list[ComputeEvent] = []
        index = {op.id: i for i, op in enumerate(self.program.ops)}
        homes, program_events = self.place_tiles(solver, start_ns)
        for op in self.program.mvm_ops():
            begin = start_ns[op.id]
            placements = tuple(
                Placement(t.id, homes.get((t.id, op.id), homes.get((t.id, None), -1)))
                for t in op.tiles)
            compute.append(ComputeEvent(op.id, begin, begin + self.latency_ns[op.id],
                                        placements))
        compute.extend(self.place_digital(start_ns))
        compute.sort(key=lambda e: (e.start_ns, index[e.op]))
        initial = tuple(Placement(t, c) for c, t in sorted(self.initial.items()))
        return Schedule(MappingMode(self.mode), tuple(program_events), tuple(compute),
                        initial)

    def place_tiles(
        self, solver: cp_model.CpSolver, start_ns: dict[str, int]
    ) -> tuple[dict[tuple[str, str | None], int], list[ProgramEvent]]:
        """Give every write of a tile a crossbar and an event.

        Returns:
            The crossbar of each tile, keyed ``(tile, None)`` when the tile is written
            once (resident, or a kept matrix) and ``(tile, operator)`` when it is
            written for that operator; and the write events.

        """
        homes: dict[tuple[str, str | None], int] = {}
        events: list[ProgramEvent] = []
        if self.mode == MappingMode.RESIDENT:
            for crossbar, tile_id in self.initial.items():
                homes[(tile_id, None)] = crossbar
            occupied = set(self.initial)
            spare = (c for c in range(self.target.chip.crossbars) if c not in occupied)
            for matrix in self.matrices:
                for tile in matrix.tiles:
                    if (tile.id, None) in homes:
                        continue  # already in place: used where it is
                    cost = self.costs.writes[tile.id]
                    crossbar = next(spare)
                    homes[(tile.id, None)] = crossbar
                    events.append(ProgramEvent(tile.id, crossbar, 0, cost.latency_ns,
                                               cost.energy_pj))
            return homes, events
        # Dynamic: sweep the holds in time order; a crossbar is free again once the
        # hold it served has ended. The cumulative constraint guarantees enough.
        last_use = self.last_use_ns(start_ns)
        holds: list[tuple[int, str, str, int]] = []
        by_id = {w.id: w for w in self.matrices}
        for (matrix_id, op_id), begin_var in self.program_start.items():
            kept = bool(solver.value(self.keep[matrix_id]))
            if kept != (op_id is None):
                continue
            begin = solver.value(begin_var) * self.unit
            end = last_use[matrix_id] if op_id is None else (
                start_ns[op_id] + self.latency_ns[op_id])
            holds.append((begin, matrix_id, op_id or "", end))
        free_at = [0] * self.target.chip.crossbars
        for begin, matrix_id, op_id, end in sorted(holds):
            matrix = by_id[matrix_id]
            free = [c for c, t in enumerate(free_at) if t <= begin][:len(matrix.tiles)]
            assert len(free) == len(matrix.tiles), "cumulative holds exceed the chip"
            for tile, crossbar in zip(matrix.tiles, free, strict=True):
                cost = self.costs.writes[tile.id]
                homes[(tile.id, op_id or None)] = crossbar
                events.append(ProgramEvent(tile.id, crossbar, begin, begin + cost.latency_ns,
                                           cost.energy_pj))
                free_at[crossbar] = max(begin + cost.latency_ns, end)
        events.sort(key=lambda e: (e.start_ns, e.crossbar))
        return homes, events

    def last_use_ns(self, start_ns: dict[str, int]) -> dict[str, int]:
        last: dict[str, int] = {}
        for op in self.program.mvm_ops():
            for matrix in op.weights:
                end = start_ns[op.id] + self.latency_ns[op.id]
                last[matrix.id] = max(last.get(matrix.id, 0), end)
        return last

    def place_digital(self, start_ns: dict[str, int]) -> list[ComputeEvent]:
        """Give digital operators units; the cumulative constraint guarantees enough."""
        free_at = [0] * self.target.chip.digital_units
        events = []
        digital = sorted((op for op in self.program.ops if not isinstance(op, MvmOp)),
                         key=lambda op: (start_ns[op.id], op.id))
        for op in digital:
            begin = start_ns[op.id]
            unit = next(u for u, t in enumerate(free_at) if t <= begin)
            free_at[unit] = begin + self.latency_ns[op.id]
            events.append(ComputeEvent(op.id, begin, free_at[unit], (), unit))
        return events


def schedule_cpsat(
    program: CrossbarProgram,
    target: Target,
    mode: str = "auto",
    *,
    time_limit_s: float = 10.0,
    hint: Schedule | None = None,
    deterministic: bool = True,
    unit_ns: int | None = None,
    seed: int = 0,
    initial: dict[int, str] | None = None,
    costs: CostTable | None = None,
) -> CpSatResult:
    """Schedule ``program`` with CP-SAT, minimising the makespan.

    Args:
        program: the lowered group.
        target: the chip.
        mode: ``resident``, ``dynamic`` or ``auto``.
        time_limit_s: solver budget; in deterministic mode a *deterministic* time
            limit (CP-SAT's work units), so results repeat exactly, with a wall-clock
            cap of four times the limit (only a run that hits the cap can differ).
        hint: a schedule to start from (normally OPS's); it also sets the horizon.
        deterministic: one worker, fixed seed, deterministic time limit.
        unit_ns: time unit; chosen by :func:`choose_time_unit` when None.
        seed: the solver's random seed.
        initial: online mapping (crossbar -> tile of this program already there), as
            OPS takes it; resident mode only.
        costs: the program priced on the target; priced here when not given.

    Raises:
        InputError: an initial state with dynamic mapping (not modeled).

    """
    resolved = resolve_mode(program, target, mode)
    if initial and resolved != "resident":
        raise InputError("the CP-SAT model takes an initial state in resident mode only; "
                         "use --solver ops for dynamic mapping from a previous plan")
    costs = costs or price(program, target)
    durations = [costs.latency_ns(op.id) for op in program.ops]
    unit = unit_ns or choose_time_unit(durations)
    writes = [costs.write_ns(t.id) for w in program.weight_matrices() for t in w.tiles]
    if hint is not None:
        hinted_end = hint.end_ns()
        horizon = math.ceil(hinted_end / unit) + len(program.ops) + len(writes) + 1
    else:
        horizon = sum(math.ceil(d / unit) for d in durations + writes) + 1
    built = _Model(program, target, costs, resolved, unit, horizon, initial)
    if hint is not None and hint.mode == resolved:
        built.hint(hint)
    solver = cp_model.CpSolver()
    solver.parameters.random_seed = seed
    if deterministic:
        solver.parameters.num_workers = 1
        solver.parameters.max_deterministic_time = time_limit_s
        solver.parameters.max_time_in_seconds = time_limit_s * _WALL_CAP_FACTOR
    else:
        solver.parameters.max_time_in_seconds = time_limit_s
    started = time.perf_counter()
    status = solver.solve(built.model)
    wall_s = time.perf_counter() - started
    name = solver.status_name(status)
    # The objective is makespan * scale + cells written; its bound bounds the makespan.
    bound_ns = int(solver.best_objective_bound) // built.objective_scale * unit
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return CpSatResult(None, name, None, bound_ns, unit, wall_s)
    schedule = built.extract(solver)
    makespan = schedule.end_ns()
    logger.info("CP-SAT %s %s: makespan %d ns, bound %d ns (unit %d ns) in %.2f s",
                resolved, name, makespan, bound_ns, unit, wall_s)
    return CpSatResult(schedule, name, makespan, bound_ns, unit, wall_s)
