"""A pool of long-lived worker processes for CPU work (decode, inference, encode), with a timeout
that really stops a hung task.

Each slot is one process, started with ``spawn`` and prepared once by ``initializer`` (for the
confirmation worker: load the ONNX model, so one InferenceSession per process). A task goes to
an idle slot over a pipe; the event loop waits for the answer without blocking. When a task runs
past its timeout, its process is killed (SIGKILL: a decoder stuck in C code ignores everything
else) and a fresh one takes the slot; the caller gets ``CpuTimeout``. A process that dies mid-task
(segfault, OOM killer) gives ``WorkerCrashed``. Exceptions raised by the task come back as
themselves when they can be pickled, otherwise as ``RemoteError``.

Functions and arguments cross the pipe pickled: pass module-level functions and plain data.
If the parent dies (even SIGKILL), idle children see the pipe close and exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.connection
import pickle
import signal
import traceback
from collections import deque
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from backend.core.logging import get_logger

log = get_logger(__name__)

T = TypeVar("T")
R = TypeVar("R")

_READY = "ready"
_OK = "ok"
_ERROR = "error"


class CpuPoolError(Exception):
    pass


class CpuTimeout(CpuPoolError):
    """The task ran past its timeout; its process was killed."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"timed out after {timeout_s:g} s")
        self.timeout_s = timeout_s


class WorkerCrashed(CpuPoolError):
    """The process running the task died (a signal, the OOM killer, a crash in native code)."""

    def __init__(self, exitcode: int | None) -> None:
        how = f"signal {-exitcode}" if exitcode is not None and exitcode < 0 else f"exit code {exitcode}"
        super().__init__(f"worker process died ({how})")
        self.exitcode = exitcode


class RemoteError(CpuPoolError):
    """The task raised an exception that cannot cross the pipe; its type, message and traceback."""

    def __init__(self, type_name: str, message: str, remote_traceback: str = "") -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message
        self.remote_traceback = remote_traceback

    def __reduce__(self) -> tuple[Any, ...]:
        return (RemoteError, (self.type_name, self.message, self.remote_traceback))


def _portable(exc: BaseException) -> BaseException:
    """The exception itself if it survives pickling both ways, else a RemoteError describing it."""
    try:
        back = pickle.loads(pickle.dumps(exc))  # noqa: S301 - our own bytes, in this process
    except (pickle.PicklingError, TypeError, AttributeError, ValueError):
        back = None
    if isinstance(back, BaseException):
        return back
    return RemoteError(type(exc).__name__, str(exc), "".join(traceback.format_exception(exc)))


def _child_main(
    conn: multiprocessing.connection.Connection,
    initializer: Callable[..., None] | None,
    initargs: tuple[Any, ...],
) -> None:
    """Run in the child: initialise once, then answer tasks until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        if initializer is not None:
            initializer(*initargs)
    except Exception as exc:  # noqa: BLE001 - whatever fails, the parent must hear why
        conn.send((_ERROR, _portable(exc)))
        return
    conn.send((_READY, None))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if message is None:
            return
        fn, arg = message
        try:
            reply: tuple[str, Any] = (_OK, fn(arg))
        except Exception as exc:  # noqa: BLE001 - a task's failure is the caller's to classify
            reply = (_ERROR, _portable(exc))
        try:
            conn.send(reply)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            conn.send((_ERROR, RemoteError(type(exc).__name__, f"result cannot be sent: {exc}")))
        except OSError:
            return


class _Slot:
    def __init__(self, process: BaseProcess, conn: multiprocessing.connection.Connection) -> None:
        self.process = process
        self.conn = conn
        self.ready = False


class CpuPool:
    """``size`` worker processes; ``await pool.run(fn, arg, timeout_s=...)`` runs ``fn(arg)`` in one."""

    def __init__(
        self,
        size: int,
        *,
        initializer: Callable[..., None] | None = None,
        initargs: tuple[Any, ...] = (),
        start_timeout_s: float = 120.0,
    ) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        self._initializer = initializer
        self._initargs = initargs
        self._start_timeout_s = start_timeout_s
        self._mp = multiprocessing.get_context("spawn")  # no fork: the parent has threads and an event loop
        self._idle: deque[_Slot] = deque()
        self._waiters: deque[asyncio.Future[_Slot]] = deque()
        self._all: set[_Slot] = set()
        self._closed = False
        self.restarts = 0  # processes replaced after a timeout or a crash

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Start every process and wait until each has run the initializer."""
        slots = [await self._spawn() for _ in range(self.size)]
        try:
            await asyncio.gather(*(self._wait_ready(slot) for slot in slots))
        except BaseException:
            await self.close()
            raise
        self._idle.extend(slots)

    async def run(self, fn: Callable[[T], R], arg: T, *, timeout_s: float) -> R:
        """Run ``fn(arg)`` in a worker process; kill it and raise ``CpuTimeout`` after ``timeout_s``."""
        slot = await self._acquire()
        if not slot.process.is_alive():  # died while idle (OOM killer, an operator): not this task's fault
            await self._stop(slot, grace_s=0.0)
            slot = await self._spawn()
        keep = False
        try:
            if not slot.ready:
                await self._wait_ready(slot)
            slot.conn.send((fn, arg))
            try:
                status, payload = await asyncio.wait_for(self._receive(slot), timeout_s)
            except TimeoutError:
                raise CpuTimeout(timeout_s) from None
            keep = True
        except (EOFError, ConnectionError) as exc:
            raise WorkerCrashed(await self._reap(slot)) from exc
        finally:
            await (self._release(slot) if keep else self._replace(slot))
        if status == _ERROR:
            raise payload
        return payload  # type: ignore[no-any-return]

    async def close(self) -> None:
        """Stop every process (politely when idle, by force otherwise)."""
        self._closed = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(CpuPoolError("pool closed"))
        slots, self._all = list(self._all), set()
        idle = set(self._idle)
        self._idle.clear()
        for slot in slots:
            if slot in idle:
                with contextlib.suppress(OSError):
                    slot.conn.send(None)
        await asyncio.gather(*(self._stop(slot, grace_s=2.0 if slot in idle else 0.0) for slot in slots))

    # --- slots ---------------------------------------------------------------------------

    async def _spawn(self) -> _Slot:
        parent, child = self._mp.Pipe(duplex=True)
        process = self._mp.Process(
            target=_child_main, args=(child, self._initializer, self._initargs), name="kuzet-cpu", daemon=True
        )
        await asyncio.to_thread(process.start)
        child.close()
        slot = _Slot(process, parent)
        self._all.add(slot)
        return slot

    async def _wait_ready(self, slot: _Slot) -> None:
        try:
            status, payload = await asyncio.wait_for(self._receive(slot), self._start_timeout_s)
        except TimeoutError:
            raise CpuPoolError(f"worker process not ready after {self._start_timeout_s:g} s") from None
        except EOFError as exc:
            raise WorkerCrashed(await self._reap(slot)) from exc
        if status == _ERROR:
            raise CpuPoolError(f"worker process failed to initialise: {payload}") from payload
        slot.ready = True

    async def _receive(self, slot: _Slot) -> tuple[str, Any]:
        """Wait until the pipe is readable without blocking the loop, then read one message."""
        loop = asyncio.get_running_loop()
        readable: asyncio.Future[None] = loop.create_future()
        fd = slot.conn.fileno()

        def wake() -> None:
            if not readable.done():
                readable.set_result(None)

        loop.add_reader(fd, wake)
        try:
            await readable
        finally:
            loop.remove_reader(fd)
        message: tuple[str, Any] = slot.conn.recv()  # replies are small and already written
        return message

    async def _acquire(self) -> _Slot:
        if self._closed:
            raise CpuPoolError("pool closed")
        if self._idle:
            return self._idle.popleft()
        waiter: asyncio.Future[_Slot] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                await self._release(waiter.result())  # handed over just as we were cancelled
            raise
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    async def _release(self, slot: _Slot) -> None:
        if self._closed or slot not in self._all:
            await self._stop(slot, grace_s=0.0)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(slot)
                return
        self._idle.append(slot)

    async def _replace(self, slot: _Slot) -> None:
        """Kill the slot's process (busy with a task nobody waits for) and start a fresh one."""
        exitcode = await self._stop(slot, grace_s=0.0)
        if self._closed:
            return
        self.restarts += 1
        log.warning("cpu_worker_replaced", exitcode=exitcode, restarts=self.restarts)
        fresh = await self._spawn()
        await self._release(fresh)  # the next task waits for it to be ready

    async def _reap(self, slot: _Slot) -> int | None:
        """Collect a process that closed its pipe; its exit code."""
        await asyncio.to_thread(slot.process.join, 1.0)
        return slot.process.exitcode

    async def _stop(self, slot: _Slot, *, grace_s: float) -> int | None:
        """Stop the slot's process (SIGKILL after ``grace_s``); return its exit code."""
        self._all.discard(slot)
        process = slot.process
        if grace_s > 0:
            await asyncio.to_thread(process.join, grace_s)
        if process.is_alive():
            process.kill()
            await asyncio.to_thread(process.join, 5.0)
        exitcode = process.exitcode
        slot.conn.close()
        with contextlib.suppress(ValueError):
            process.close()
        return exitcode


class Batcher(Generic[T, R]):
    """Runs ``one(arg)`` in ``pool`` at once while a process is free; what arrives while every process
    is busy waits, and the next process that comes free takes up to ``max_size`` of the waiting
    arguments together as ``many(args)``, which answers one result or exception per argument (for
    the confirmation: one network run over several clips). A lone request never waits for a batch.

    A batch that runs past its time or crashes its process is run again one by one, so that only the
    argument that hung or crashed it fails."""

    def __init__(
        self,
        pool: CpuPool,
        one: Callable[[T], R],
        many: Callable[[list[T]], list[R | Exception]],
        *,
        max_size: int,
    ) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self.pool, self.one, self.many, self.max_size = pool, one, many, max_size
        self.batches: list[int] = []  # sizes of the runs of ``many`` so far
        self._busy = 0
        self._waiting: deque[tuple[T, asyncio.Future[R], float]] = deque()
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, arg: T, *, timeout_s: float) -> R:
        if self.max_size == 1 or (self._busy < self.pool.size and not self._waiting):
            self._busy += 1
            try:
                return await self.pool.run(self.one, arg, timeout_s=timeout_s)
            finally:
                self._busy -= 1
                self._next()
        waiter: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((arg, waiter, timeout_s))
        return await waiter

    def _next(self) -> None:
        """Hand the process that just came free to the waiting arguments, if any."""
        batch: list[tuple[T, asyncio.Future[R], float]] = []
        while self._waiting and len(batch) < self.max_size:
            item = self._waiting.popleft()
            if not item[1].done():  # its caller gave up (cancelled): skip it
                batch.append(item)
        if not batch:
            return
        self._busy += 1
        task = asyncio.create_task(self._run_batch(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_batch(self, batch: list[tuple[T, asyncio.Future[R], float]]) -> None:
        try:
            results: list[R | Exception] | None = None
            if len(batch) > 1:
                self.batches.append(len(batch))
                try:
                    results = await self.pool.run(
                        self.many, [arg for arg, _, _ in batch], timeout_s=sum(t for _, _, t in batch)
                    )
                except (CpuTimeout, WorkerCrashed):
                    results = None  # one of them may be the culprit: each alone
                except Exception as exc:  # noqa: BLE001 - every caller hears why
                    results = [exc] * len(batch)
            if results is None:
                results = [await self._alone(arg, timeout_s) for arg, _, timeout_s in batch]
            for (_, waiter, _), result in zip(batch, results, strict=True):
                if waiter.done():
                    continue
                if isinstance(result, Exception):
                    waiter.set_exception(result)
                else:
                    waiter.set_result(result)
        finally:
            self._busy -= 1
            self._next()

    async def _alone(self, arg: T, timeout_s: float) -> R | Exception:
        try:
            return await self.pool.run(self.one, arg, timeout_s=timeout_s)
        except Exception as exc:  # noqa: BLE001 - handed to its caller
            return exc
