"""One onnxruntime InferenceSession per model file and process, with the threads the process is given.

A confirmation process runs one clip at a time, so its sessions get ``intra`` threads for one
operator (``KUZET_WORKER_ONNX_THREADS``; by default the process's cores divided among the
confirmation processes, so that they never oversubscribe the cores), one inter-op thread (the
graphs are sequential), and no spinning: a thread that waits sleeps instead of burning the core
that the decoder or the other process wants. ``configure`` is called once per process before the
first session (the pool's initializer); without it, sessions run on one thread.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

_SESSIONS: dict[tuple[Path, str | None], ort.InferenceSession] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class Threads:
    intra: int = 1
    inter: int = 1
    spin: bool = False


_THREADS = Threads()


CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "quota period", or "max period" without a limit


def cores(cpu_max: Path = CPU_MAX) -> int:
    """The cores this process may use: its CPU affinity (else every core), capped by its cgroup's CPU
    quota where one is set (a container's CPU limit, rounded up)."""
    try:
        count = len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        count = os.cpu_count() or 1
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return count
    if quota == "max" or not quota.isdigit() or not period.isdigit() or int(period) == 0:
        return count
    return max(1, min(count, math.ceil(int(quota) / int(period))))


def default_intra_threads(setting: int, processes: int) -> int:
    """``setting`` when set (> 0), else the cores divided among ``processes``, at least 1."""
    return setting if setting > 0 else max(1, cores() // max(1, processes))


def configure(intra: int) -> None:
    """Threads for the sessions this process opens from now on (sessions already open keep theirs)."""
    global _THREADS  # noqa: PLW0603 - one setting per process, by design
    if intra < 1:
        raise ValueError("intra must be at least 1")
    _THREADS = Threads(intra=intra)


def session_options() -> ort.SessionOptions:
    """The options every session of this process is opened with."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = _THREADS.intra
    opts.inter_op_num_threads = _THREADS.inter
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    spin = "1" if _THREADS.spin else "0"
    opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
    opts.add_session_config_entry("session.inter_op.allow_spinning", spin)
    return opts


def onnx_session(path: Path, prepare: Callable[[Path], bytes] | None = None) -> ort.InferenceSession:
    """The process's session for the model file at ``path``; with ``prepare``, for the serialized
    model it makes of that file (one session per file and ``prepare``)."""
    key = (path.resolve(), None if prepare is None else f"{prepare.__module__}.{prepare.__qualname__}")
    with _LOCK:
        sess = _SESSIONS.get(key)
        if sess is None:
            source: str | bytes = str(key[0]) if prepare is None else prepare(key[0])
            sess = ort.InferenceSession(source, sess_options=session_options(), providers=["CPUExecutionProvider"])
            _SESSIONS[key] = sess
        return sess
