"""One onnxruntime InferenceSession per model file and process, single-threaded (workers scale by process)."""

from __future__ import annotations

import threading
from pathlib import Path

import onnxruntime as ort

_SESSIONS: dict[Path, ort.InferenceSession] = {}
_LOCK = threading.Lock()


def onnx_session(path: Path) -> ort.InferenceSession:
    key = path.resolve()
    with _LOCK:
        sess = _SESSIONS.get(key)
        if sess is None:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
            sess = ort.InferenceSession(str(key), sess_options=opts, providers=["CPUExecutionProvider"])
            _SESSIONS[key] = sess
        return sess
