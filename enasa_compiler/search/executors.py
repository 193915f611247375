"""Where units of work run: in this process, or as tasks on a Ray cluster.

An executor maps a function over tasks, ``fn(task, *shared)``, and returns the results
in submission order, whatever order they finish in. Large inputs every task reads (a
supernet's weights, a dataset) are handed over once with :meth:`Executor.share`: the
in-process executor keeps a reference, the Ray executor puts the value into the object
store once and each worker process fetches it at most once (it keeps the last few shared
values). The search's unit of work is a group (:func:`~._group.run_group`); other
commands can map their own functions over the same executors.

Nothing a result depends on may come from the executor: a task carries its own seed,
thread count and options, so a run on Ray gives the same bytes as a run in process. A
Ray worker that dies (killed, out of memory) has its task retried on another worker up
to ``max_retries`` times; an exception raised by the task itself is not retried and
reaches the caller as the original exception.
"""

from __future__ import annotations

import logging
import os
import uuid
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from enasa_compiler.errors import InputError
from enasa_compiler.search.group import GroupInputs, GroupResult, GroupTask, run_group

logger = logging.getLogger(__name__)

__all__ = [
    "EXECUTORS",
    "Executor",
    "GroupInputs",
    "GroupResult",
    "GroupTask",
    "InProcessExecutor",
    "RayExecutor",
    "Shared",
    "make_executor",
    "run_group",
]

EXECUTORS = ("inprocess", "ray")
DEFAULT_MAX_RETRIES = 3
_WORKER_CACHE_SIZE = 4  # shared values a Ray worker keeps (one search uses two)

TaskT = TypeVar("TaskT")
ResultT = TypeVar("ResultT")
TaskHook = Callable[[Any], None]
"""Called with each task just before it runs, in the process that runs it (fault
injection, instrumentation). It must be picklable for the Ray executor."""


@dataclass(frozen=True)
class Shared:
    """A value handed to an executor once and read by many tasks.

    Attributes:
        key: Unique name of the value (workers cache by it).
        payload: The value itself (in process) or a Ray ``ObjectRef`` inside a tuple, so
            Ray does not resolve it before the task decides whether it needs it.

    """

    key: str
    payload: Any


class Executor(ABC):
    """Runs ``fn(task, *shared values)`` for each task; results in submission order."""

    name: str = ""

    @abstractmethod
    def share(self, value: Any) -> Shared:
        """Hand ``value`` over once, for tasks to read through the returned handle."""

    @abstractmethod
    def map(
        self,
        fn: Callable[..., ResultT],
        tasks: Sequence[Any],
        shared: Sequence[Shared] = (),
        *,
        on_result: Callable[[int], None] | None = None,
    ) -> list[ResultT]:
        """Run ``fn(task, *values of shared)`` for every task.

        Args:
            fn: A module-level function (Ray pickles it by reference).
            tasks: The tasks, in the order of the results.
            shared: Handles from :meth:`share`, resolved to their values for ``fn``.
            on_result: Called with a task's position as each finishes (progress).

        Returns:
            One result per task, in the order of ``tasks``.

        """

    def close(self) -> None:  # noqa: B027 - most executors start nothing to release
        """Release what the executor started."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def workers(self) -> int:
        """How many tasks can run at once."""
        return 1


class InProcessExecutor(Executor):
    """Runs every task here, one after another (the default)."""

    name = "inprocess"

    def __init__(self, *, task_hook: TaskHook | None = None) -> None:
        self.task_hook = task_hook

    def share(self, value: Any) -> Shared:  # noqa: D102 - see Executor
        return Shared(uuid.uuid4().hex, value)

    def map(  # noqa: D102 - see Executor
        self,
        fn: Callable[..., ResultT],
        tasks: Sequence[Any],
        shared: Sequence[Shared] = (),
        *,
        on_result: Callable[[int], None] | None = None,
    ) -> list[ResultT]:
        values = [handle.payload for handle in shared]
        results = []
        for position, task in enumerate(tasks):
            if self.task_hook is not None:
                self.task_hook(task)
            results.append(fn(task, *values))
            if on_result is not None:
                on_result(position)
        return results


# --- Ray ---------------------------------------------------------------------------------

_worker_cache: OrderedDict[str, Any] = OrderedDict()


def _resolve(handle: Shared) -> Any:
    """Return a shared value in a Ray worker, fetching it from the object store once."""
    import ray

    if handle.key in _worker_cache:
        _worker_cache.move_to_end(handle.key)
        return _worker_cache[handle.key]
    value = ray.get(handle.payload[0])
    _worker_cache[handle.key] = value
    while len(_worker_cache) > _WORKER_CACHE_SIZE:
        _worker_cache.popitem(last=False)
    return value


def _ray_task(
    fn: Callable[..., Any], task: Any, shared: Sequence[Shared], hook: TaskHook | None
) -> Any:
    if hook is not None:
        hook(task)
    return fn(task, *(_resolve(handle) for handle in shared))


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise InputError("the Ray executor needs Ray: pip install 'enasa-compiler[ray]'") \
            from exc
    return ray


class RayExecutor(Executor):
    """Runs tasks on a Ray cluster, each as a Ray task with automatic retries.

    Args:
        address: Cluster to join (``ray.init(address=...)``, e.g. ``"auto"`` or
            ``"ray://host:10001"``); ``None`` starts a local cluster, unless this
            process already joined one, which is then used as it is.
        workers: CPUs of the local cluster started when ``address`` is ``None``
            (default: the machine's CPUs); with an address, the cluster's own.
        max_retries: Retries of a task whose worker died.
        cpus_per_task: CPUs Ray reserves for each task.
        task_hook: See :data:`TaskHook`.

    A cluster this executor started is shut down by :meth:`close`; one it joined is
    left running.

    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        workers: int | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        cpus_per_task: float = 1.0,
        task_hook: TaskHook | None = None,
    ) -> None:
        if workers is not None and workers < 1:
            raise InputError(f"need at least one worker, got {workers}")
        if max_retries < 0:
            raise InputError(f"max retries must be >= 0, got {max_retries}")
        self._ray = _import_ray()
        self.max_retries = max_retries
        self.cpus_per_task = cpus_per_task
        self.task_hook = task_hook
        self._started = False
        if not self._ray.is_initialized():
            cpus = (workers or os.cpu_count() or 1) if address is None else None
            self._ray.init(address=address, num_cpus=cpus, include_dashboard=False,
                           logging_level=logging.WARNING, log_to_driver=False)
            self._started = True
        elif address is not None or workers is not None:
            logger.info("Ray is already initialised here; ignoring address and workers")
        self._remote = self._ray.remote(_ray_task)

    @property
    def workers(self) -> int:
        """CPUs of the cluster divided by the CPUs of a task."""
        cpus = float(self._ray.cluster_resources().get("CPU", 1.0))
        return max(1, int(cpus // self.cpus_per_task))

    def share(self, value: Any) -> Shared:  # noqa: D102 - see Executor
        return Shared(uuid.uuid4().hex, (self._ray.put(value),))

    def map(  # noqa: D102 - see Executor
        self,
        fn: Callable[..., ResultT],
        tasks: Sequence[Any],
        shared: Sequence[Shared] = (),
        *,
        on_result: Callable[[int], None] | None = None,
    ) -> list[ResultT]:
        ray = self._ray
        remote = self._remote.options(max_retries=self.max_retries,
                                      num_cpus=self.cpus_per_task)
        refs = [remote.remote(fn, task, list(shared), self.task_hook) for task in tasks]
        position = {ref: index for index, ref in enumerate(refs)}
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                if on_result is not None:
                    on_result(position[done[0]])
            return list(ray.get(refs))
        except ray.exceptions.RayTaskError as exc:
            # The task's own exception (bad input, a bug) is what the caller can act on.
            cause = getattr(exc, "cause", None)
            if isinstance(cause, BaseException):
                raise cause from None
            raise
        finally:
            for ref in pending:
                ray.cancel(ref)

    def close(self) -> None:
        """Shut the local cluster down if this executor started it."""
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
        self._started = False


def make_executor(
    name: str = "inprocess", *, address: str | None = None, workers: int | None = None
) -> Executor:
    """Build the executor ``name`` (one of :data:`EXECUTORS`) as a command line asks.

    Raises:
        InputError: Unknown name, Ray options for the in-process executor, or Ray missing.

    """
    if name == "inprocess":
        if address is not None or workers is not None:
            raise InputError("--address and --workers apply to --executor ray only")
        return InProcessExecutor()
    if name == "ray":
        return RayExecutor(address, workers=workers)
    raise InputError(f"unknown executor '{name}' (choose from {', '.join(EXECUTORS)})")
