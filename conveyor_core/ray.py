"""Ray executors: a task's calls on a Ray cluster (the extra "ray").

    from conveyor_core.ray import RayActors, RayTasks

    @batch_task(max_size=32, executor=RayActors(replicas=2, num_cpus=1))
    class Embed:                       # constructed once per actor: load the model here
        def __call__(self, texts: list[str]) -> list[list[float]]: ...

    @single_task(executor=RayTasks(num_cpus=1))    # each call a Ray task
    def crunch(x: int) -> int: ...

Ray is imported and connected on the first call, not before (`import conveyor_core` never imports
it): `address=` or `RAY_ADDRESS` joins that cluster (`ray://head:10001` from outside it), else
a local Ray is started for this process (`connect()` says how; call it yourself, or
`ray.init(...)`, to choose). A call's exception reaches the run as the task's own; a worker that
died fails the call with `WorkerLost`, which the retry policy may retry on a live or new
worker. A cancelled call is cancelled on the cluster (`ray.cancel`), and one still running
after `cancel_grace_s` is stopped by force: its task's worker, or its actor, is killed (a new
actor replaces it; its other calls are sent again).
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import logging
import os
import re
import threading
from typing import Any, NoReturn

from ._errors import PipelineDefinitionError, WorkerLost
from ._events import describe_error
from ._executors import RAY_HINT, Call, CallTarget, Executor
from ._remote import Payload, run_bound

__all__ = ["LOCAL_RAY", "RayActors", "RayTasks", "connect"]

LOCAL_RAY: dict[str, Any] = {
    "include_dashboard": False,
    "object_store_memory": 512 * 2**20,  # Ray's default is 30% of the machine's memory
}
"""What `connect()` gives `ray.init` when it starts a local Ray (plus `num_cpus`: the CPUs)."""

logger = logging.getLogger("conveyor_core")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_connect_lock = threading.Lock()
_remote_lock = threading.Lock()
_remotes: dict[str, Any] = {}


def connect(address: str | None = None, **options: Any) -> None:
    """Connect this process to Ray, unless it is already (then this does nothing).

    `address` (else `RAY_ADDRESS`) joins that cluster; without one, a local Ray is started with
    `LOCAL_RAY` and `num_cpus` = the machine's CPUs. `options` go to `ray.init` as well.
    Blocking: executors call it in a thread on their first call.
    """
    ray = _import_ray()
    with _connect_lock:
        if ray.is_initialized():
            return
        address = address or os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, **options)
        else:
            ray.init(**{"num_cpus": os.cpu_count(), **LOCAL_RAY, **options})


class _RayExecutor(Executor):
    """What both Ray executors share: options, the lazy connection, waiting for a call."""

    def __init__(
        self,
        *,
        num_cpus: float,
        num_gpus: float,
        address: str | None,
        cancel_grace_s: float,
        options: dict[str, Any] | None,
    ) -> None:
        _require_ray(type(self).__name__)
        if not cancel_grace_s >= 0:
            raise PipelineDefinitionError(f"cancel_grace_s must be >= 0, got {cancel_grace_s!r}")
        self.address = address
        self.cancel_grace_s = cancel_grace_s
        self.options: dict[str, Any] = {"num_cpus": num_cpus, "num_gpus": num_gpus}
        self.options.update(options or {})

    async def _connect(self) -> Any:
        ray = _import_ray()
        if not ray.is_initialized():
            await asyncio.to_thread(connect, self.address)
        return ray

    async def _shared(self, target: CallTarget, value: Any, cache: list[Any]) -> Any:
        """`value` as each call of the run sends it: put in Ray's object store once per run
        when the run has side inputs (they may be large), else as it is (a fetch saved)."""
        ray = await self._connect()
        if not cache:
            cache.append(ray.put(value) if target.args or target.kwargs else value)
        return cache[0]


class RayTasks(_RayExecutor):
    """Each call a Ray task (`num_cpus`, `num_gpus` and `options` as `ray.remote` takes them).
    At most `max_in_flight` calls of a stage at once in a run. A decorated class is
    instantiated once per Ray worker process."""

    def __init__(
        self,
        *,
        num_cpus: float = 1,
        num_gpus: float = 0,
        max_in_flight: int = 64,
        address: str | None = None,
        cancel_grace_s: float = 1.0,
        options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            address=address,
            cancel_grace_s=cancel_grace_s,
            options={"max_retries": 0, **(options or {})},  # retries are the task policy's
        )
        if not isinstance(max_in_flight, int) or max_in_flight < 1:
            raise PipelineDefinitionError(
                f"max_in_flight must be an int >= 1, got {max_in_flight!r}"
            )
        self.max_in_flight = max_in_flight

    def describe(self) -> str:
        return "ray-tasks"

    def bind(self, target: CallTarget) -> Call:
        payload = Payload(target.func, target.instance, target.is_class, main_by_reference=False)
        cache: list[Any] = []

        async def call(item: Any) -> Any:
            bound = await self._shared(target, (payload, target.args, target.kwargs), cache)
            ray = _import_ray()
            ref = _remote("task", run_bound).options(**self.options).remote(bound, item)
            try:
                return await _outcome(ref)
            except asyncio.CancelledError:
                ray.cancel(ref)  # not started: dropped; running: interrupted
                if not await _ended(ref, self.cancel_grace_s):
                    logger.info(
                        "%s: a cancelled Ray task goes on: its worker is killed", target.name
                    )
                    ray.cancel(ref, force=True)
                    if not await _ended(ref, self.cancel_grace_s):
                        logger.warning("%s: a cancelled Ray task did not end", target.name)
                raise
            except ray.exceptions.RayError as exc:
                _raise(exc, target.name, "Ray task worker")

        return call


class RayActors(_RayExecutor):
    """Calls on `replicas` Ray actors per task, each holding the task's callable (a decorated
    class is instantiated once per actor: load models in `__init__`), running
    `max_concurrency` calls at once: at most `replicas x max_concurrency` calls of a stage at
    once in a run. A call goes to the actor with the fewest calls in flight. An actor that dies
    is replaced by a new one. Each task that uses this executor gets its own `replicas` actors,
    which hold their CPUs and GPUs until `aclose()`; a new actor that cannot start within
    `start_timeout_s` (the cluster lacks the resources) fails its call with `WorkerLost`.
    `actor_handles()` lists the live actors."""

    def __init__(
        self,
        replicas: int = 1,
        *,
        num_cpus: float = 1,
        num_gpus: float = 0,
        max_concurrency: int = 1,
        address: str | None = None,
        cancel_grace_s: float = 1.0,
        max_resends: int = 2,
        start_timeout_s: float = 120.0,
        options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            address=address,
            cancel_grace_s=cancel_grace_s,
            options={"max_restarts": 0, **(options or {})},  # a dead actor is replaced here
        )
        for label, value in (("replicas", replicas), ("max_concurrency", max_concurrency)):
            if not isinstance(value, int) or value < 1:
                raise PipelineDefinitionError(f"{label} must be an int >= 1, got {value!r}")
        self.replicas = replicas
        self.max_concurrency = max_concurrency
        self.max_in_flight = replicas * max_concurrency
        self.max_resends = max_resends
        if not start_timeout_s > 0:
            raise PipelineDefinitionError(f"start_timeout_s must be > 0, got {start_timeout_s!r}")
        self.start_timeout_s = start_timeout_s
        self.options["max_concurrency"] = max_concurrency
        self._pools: dict[tuple[int, int], _ActorPool] = {}
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"ray-actors x{self.replicas}"

    def bind(self, target: CallTarget) -> Call:
        key = (id(target.func), id(target.instance))
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                pool = self._pools[key] = _ActorPool(self, target)
        cache: list[Any] = []

        async def call(item: Any) -> Any:
            side = await self._shared(target, (target.args, target.kwargs), cache)
            return await pool.call(item, side)

        return call

    def actor_handles(self) -> list[Any]:
        """The live actors of every task this executor serves."""
        with self._lock:
            pools = list(self._pools.values())
        return [actor for pool in pools for actor in pool.actors if actor is not None]

    async def aclose(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.kill_all()


class _ActorPool:
    """The actors of one task on one `RayActors`: created on first use, replaced when dead."""

    def __init__(self, executor: RayActors, target: CallTarget) -> None:
        self.executor = executor
        self.name = target.name
        # the target pins the function and instance the pool's key is made of
        self.target = target
        self.payload = Payload(target.func, target.instance, target.is_class, False)
        self.actors: list[Any] = [None] * executor.replicas
        self.ready: list[Any] = [None] * executor.replicas  # a new actor's ready call
        self.load = [0] * executor.replicas
        self.recycled: set[Any] = set()  # actors killed here: their calls are sent again
        self.ids = itertools.count(1)

    def _actor(self, index: int) -> Any:
        actor = self.actors[index]
        if actor is None:
            # `Replica.abandon` runs in its own group, at once, whatever the actor is doing
            from ._ray_replica import Replica

            actor_class = _remote("actor", Replica, concurrency_groups={"control": 1})
            actor_class = actor_class.options(**self.executor.options)
            actor = self.actors[index] = actor_class.remote(self.payload)
            self.ready[index] = actor.abandon.remote(0)  # runs once the actor is constructed
        return actor

    async def _started(self, index: int, actor: Any) -> None:
        """Wait until a new actor runs (its constructor ended), up to `start_timeout_s`: an
        actor the cluster cannot place (too few CPUs or GPUs left) would wait forever."""
        ready = self.ready[index]
        if ready is None:
            return
        timeout = self.executor.start_timeout_s
        waiter = _outcome(ready)
        done, _ = await asyncio.wait({waiter}, timeout=timeout)
        if not done:
            waiter.cancel()
            self._kill(index, actor)
            options = {k: self.executor.options[k] for k in ("num_cpus", "num_gpus")}
            raise WorkerLost(
                f"stage {self.name!r}: a Ray actor did not start within {timeout:g} s: does the "
                f"cluster have {options} free for each of the {len(self.actors)} replicas?"
            )
        done.pop().result()  # a constructor that raised: the actor died (RayActorError)
        if self.actors[index] is actor:
            self.ready[index] = None

    def _replace(self, index: int, actor: Any) -> None:
        if self.actors[index] is actor:
            self.actors[index] = self.ready[index] = None

    async def call(self, item: Any, side: Any) -> Any:
        ray = _import_ray()
        for sent in itertools.count():
            index = min(range(len(self.load)), key=self.load.__getitem__)
            actor = self._actor(index)
            call_id = next(self.ids)
            self.load[index] += 1
            try:
                await self._started(index, actor)
                ref = actor.call.remote(call_id, item, side)
                try:
                    return await _outcome(ref)
                except asyncio.CancelledError:
                    await self._abandon(index, actor, call_id, ref)
                    raise
            except ray.exceptions.RayActorError as exc:
                self._replace(index, actor)
                if actor in self.recycled and sent < self.executor.max_resends:
                    continue  # an actor we killed broke this call: it did nothing wrong
                _raise(exc, self.name, "Ray actor")
            except ray.exceptions.RayError as exc:
                _raise(exc, self.name, "Ray actor")
            finally:
                self.load[index] -= 1
        raise AssertionError("unreachable")

    async def _abandon(self, index: int, actor: Any, call_id: int, ref: Any) -> None:
        """Stop a cancelled call: skipped if it has not started, else given the grace time,
        then its actor is killed. (Not `ray.cancel`: cancelling an actor call that was not
        sent yet leaves the actor waiting for it, and stalls its next calls for 30 s.)"""
        ray = _import_ray()
        grace = self.executor.cancel_grace_s
        try:
            running = await asyncio.wait_for(_outcome(actor.abandon.remote(call_id)), grace + 1.0)
        except (ray.exceptions.RayError, TimeoutError):
            running = True  # the actor does not answer: it goes
        if running and not await _ended(ref, grace):
            logger.info("%s: a cancelled call goes on: its Ray actor is killed", self.name)
            self._kill(index, actor)

    def _kill(self, index: int, actor: Any) -> None:
        self.recycled.add(actor)
        self._replace(index, actor)
        _import_ray().kill(actor)

    def kill_all(self) -> None:
        for index, actor in enumerate(self.actors):
            if actor is not None:
                self._kill(index, actor)


def _outcome(ref: Any) -> asyncio.Future[Any]:
    """A future of this loop with the outcome of `ref`'s call. Hand-written, not
    `asyncio.wrap_future(ref.future())`: that cancels Ray's future when the await is
    cancelled, which Ray's client (`ray://`) does not expect (its thread then fails)."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[Any] = loop.create_future()

    def settle(outcome: Any) -> None:
        if waiter.done():  # the await was cancelled meanwhile
            return
        if outcome.cancelled():
            waiter.cancel()
        elif outcome.exception() is not None:
            waiter.set_exception(outcome.exception())
        else:
            waiter.set_result(outcome.result())

    def done(outcome: Any) -> None:  # in Ray's thread
        try:
            loop.call_soon_threadsafe(settle, outcome)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    ref.future().add_done_callback(done)
    return waiter


async def _ended(ref: Any, grace: float) -> bool:
    """Whether the call of `ref` ended (in any way) within `grace` seconds."""
    waiter = _outcome(ref)
    done, _ = await asyncio.wait({waiter}, timeout=grace)
    if not done:
        waiter.cancel()
        return False
    if not waiter.cancelled():
        waiter.exception()  # retrieved: it was abandoned
    return True


def _raise(exc: BaseException, stage: str, worker: str) -> NoReturn:
    """Raise a Ray error as the run sees it: the task's own exception, or `WorkerLost`."""
    ray = _import_ray()
    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = exc.cause
        if isinstance(cause, Exception) and not isinstance(cause, ray.exceptions.RayError):
            remote = _ANSI.sub("", str(exc))  # Ray's header and the remote traceback
            cause.add_note(f"raised in a {worker} of stage {stage!r}: {remote}")
            raise cause from None
    lines = [line.strip() for line in _ANSI.sub("", describe_error(exc)).splitlines()]
    why = lines[0] if lines[-1] in lines[:1] else f"{lines[0]} ... {lines[-1]}"  # the root cause
    raise WorkerLost(f"stage {stage!r}: the {worker} running the call was lost ({why})") from exc


def _remote(kind: str, body: Any, **options: Any) -> Any:
    """`ray.remote(**options)(body)`, made once per process."""
    with _remote_lock:
        made = _remotes.get(kind)
        if made is None:
            made = _remotes[kind] = (
                _import_ray().remote(**options)(body) if options else (_import_ray().remote(body))
            )
        return made


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise PipelineDefinitionError(f"Ray is not installed: {RAY_HINT}") from None
    return ray


def _require_ray(what: str) -> None:
    try:
        found = importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise PipelineDefinitionError(f"{what} needs Ray, which is not installed: {RAY_HINT}")
