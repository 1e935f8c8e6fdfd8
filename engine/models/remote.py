"""A remote predictor: a model's forward passes sent to a server that speaks the Open
Inference Protocol (KServe V2, Triton, MLServer, Seldon — or another Lantern's
``/v2/models/{name}/infer``) instead of a local ONNX Runtime session.

A model whose manifest has a ``predictor`` runs every plain forward pass there — so the
black-box methods (occlusion, LIME, RISE, KernelSHAP) explain what the remote server
answers, batched (``batch`` items per request), ``concurrency`` requests at once, each
retried with backoff on a connection error, a timeout, 429 or 5xx. The graph Lantern holds
still serves registration checks and the white-box methods (gradients and inner layers run
locally). Tensors travel in the protocol's binary extension (raw little-endian bytes after
the JSON header, as Triton defines it) when the server answers with it, else as JSON.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import orjson
from numpy.typing import NDArray

from engine.errors import LanternError

_DATATYPES = {"float32": "FP32", "float64": "FP64", "int64": "INT64", "int32": "INT32",
              "uint8": "UINT8", "float16": "FP16"}
_NUMPY = {v: k for k, v in _DATATYPES.items()}
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
HEADER_LENGTH = "Inference-Header-Content-Length"


class PredictorFailed(LanternError):
    status = 502
    code = "predictor_failed"


class RemotePredictor:
    """Forward passes over HTTP: ``run(x)`` answers what ``session.run`` would."""

    def __init__(
        self,
        url: str,
        model: str,
        input_name: str,
        output_name: str,
        *,
        version: str | None = None,
        batch: int = 16,
        concurrency: int = 4,
        timeout_s: float = 30.0,
        retries: int = 3,
        headers: dict[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        base = url.rstrip("/")
        path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
        self.endpoint = base + path
        self.input_name = input_name
        self.output_name = output_name
        self.batch = max(1, batch)
        self.concurrency = max(1, concurrency)
        self.retries = max(0, retries)
        self._sleep = sleep
        self._client = httpx.Client(timeout=timeout_s, headers=headers or {},
                                    limits=httpx.Limits(max_connections=self.concurrency))
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self.requests = 0  # sent, retries included
        self.retried = 0

    def close(self) -> None:
        self._client.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False)

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.concurrency, "lantern-predictor")
            return self._pool

    def run(self, x: NDArray[Any]) -> NDArray[np.float32]:
        """The model's output (N, ...) for the batch ``x``: ``batch`` items per request, up
        to ``concurrency`` requests in flight, in order."""
        chunks = [x[i : i + self.batch] for i in range(0, x.shape[0], self.batch)]
        if len(chunks) == 1:
            return self._infer(chunks[0])
        outs = list(self._executor().map(self._infer, chunks))
        return np.concatenate(outs, axis=0)

    def _body(self, chunk: NDArray[Any]) -> tuple[bytes, dict[str, str]]:
        arr = np.ascontiguousarray(chunk)
        datatype = _DATATYPES.get(arr.dtype.name)
        if datatype is None:
            arr = arr.astype(np.float32)
            datatype = "FP32"
        raw = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        header = orjson.dumps({
            "inputs": [{"name": self.input_name, "shape": list(arr.shape),
                        "datatype": datatype, "parameters": {"binary_data_size": len(raw)}}],
            "outputs": [{"name": self.output_name, "parameters": {"binary_data": True}}],
        })
        return header + raw, {HEADER_LENGTH: str(len(header)),
                              "content-type": "application/octet-stream"}

    def _infer(self, chunk: NDArray[Any]) -> NDArray[np.float32]:
        body, headers = self._body(chunk)
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self.retried += 1
                self._sleep(min(2.0, 0.1 * 2 ** (attempt - 1)))
            self.requests += 1
            try:
                r = self._client.post(self.endpoint, content=body, headers=headers)
            except httpx.TransportError as e:  # refused, reset, timed out
                last = f"{type(e).__name__}: {e}"
                continue
            if r.status_code in _RETRY_STATUS:
                last = f"HTTP {r.status_code}: {r.text[:200]}"
                continue
            if r.status_code != 200:
                raise PredictorFailed(
                    f"The remote predictor at {self.endpoint} refused a forward pass "
                    f"(HTTP {r.status_code}: {r.text[:200]}). Check the model's predictor "
                    "settings against the server's model.",
                    details={"endpoint": self.endpoint, "status": r.status_code},
                )
            return self._output(r, chunk.shape[0])
        raise PredictorFailed(
            f"The remote predictor at {self.endpoint} did not answer after "
            f"{self.retries + 1} tries ({last}). Retry later, or check the server.",
            details={"endpoint": self.endpoint, "tries": self.retries + 1},
        )

    def _output(self, r: httpx.Response, n: int) -> NDArray[np.float32]:
        content = r.content
        length = r.headers.get(HEADER_LENGTH)
        try:
            header = orjson.loads(content[: int(length)] if length else content)
            outputs = header["outputs"]
            out = next((o for o in outputs if o["name"] == self.output_name), outputs[0])
            shape = [int(s) for s in out["shape"]]
            size = (out.get("parameters") or {}).get("binary_data_size")
            if length is not None and size is not None:
                start = int(length) + sum(
                    int((o.get("parameters") or {}).get("binary_data_size", 0))
                    for o in outputs[: outputs.index(out)])
                dtype = np.dtype(_NUMPY[out["datatype"]]).newbyteorder("<")
                arr = np.frombuffer(content, dtype, count=int(np.prod(shape)), offset=start)
            else:
                arr = np.asarray(out["data"], np.float64)
            values = arr.astype(np.float32).reshape(shape)
        except (KeyError, ValueError, TypeError, IndexError, StopIteration,
                orjson.JSONDecodeError) as e:
            raise PredictorFailed(
                f"The remote predictor at {self.endpoint} answered something that is not an "
                f"inference response ({type(e).__name__}). Point the model at an Open "
                "Inference Protocol server.",
                details={"endpoint": self.endpoint},
            ) from None
        if values.shape[0] != n:
            raise PredictorFailed(
                f"The remote predictor answered {values.shape[0]} outputs for {n} inputs.",
                details={"endpoint": self.endpoint},
            )
        return values.reshape(n, -1)
