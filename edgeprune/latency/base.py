"""The latency-backend interface: something that turns ONNX bytes and an input shape into `LatencyStats`.

Every backend states *what* measures in `fingerprint()` (device, software versions, precision, threads, ...): two
figures are comparable, and a cached figure may be reused, only when the fingerprints are equal. docs/latency.md
describes each backend's timing protocol.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod

from deploy.stats import LatencyStats

from .shape import Shape, normalize_shape  # noqa: F401 (re-exported)


class MeasurementError(RuntimeError):
    """A measurement that failed (board gone after retries, engine build error, no GPU, ...).

    The message says which measurement (`what`) and why; `reason` keeps the cause alone.
    """

    def __init__(self, message: str, what: str | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.what = what
        self.reason = reason or message


def fingerprint_json(fingerprint: dict) -> str:
    """Canonical JSON of a fingerprint (sorted keys, no spaces): the form stored in cache keys."""
    return json.dumps(fingerprint, sort_keys=True, separators=(",", ":"), default=str)


def all_measured(results: list) -> list[LatencyStats]:
    """`results` (LatencyStats or MeasurementError, one per item) when nothing failed; else the first failure,
    raised with `.results` = the whole list, so that a caller keeps what did get measured."""
    failed = [r for r in results if isinstance(r, MeasurementError)]
    if not failed:
        return results
    err = failed[0]
    if len(failed) > 1:
        err = MeasurementError(f"{len(failed)} of {len(results)} measurements failed; first: {err}", err.what,
                               err.reason)
    err.results = results
    raise err


class LatencyBackend(ABC):
    """Abstract backend. Subclasses set `name` and implement `fingerprint` and `measure`."""

    name: str = "abstract"

    @abstractmethod
    def fingerprint(self) -> dict:
        """JSON-able facts that decide the figure (stable across runs on the same setup)."""

    @abstractmethod
    def measure(self, onnx: bytes, input_shape: Shape) -> LatencyStats:
        """Time one ONNX model at `input_shape`; raises MeasurementError when it cannot."""

    times_modules: bool = False  # True: times the torch module itself (torch-cuda); its ONNX only names the structure
    off_host: bool = False  # True: measures on other machines (boards), so this one may work meanwhile
    parallel: int = 1  # models `measure_many` measures at the same time (a pool of boards: one per board)

    def measure_module(self, module, input_shape: Shape, opset: int = 13) -> LatencyStats:
        """Time a torch module: exported to ONNX at `opset` (`module_to_onnx`) and measured, unless the backend
        times modules itself."""
        from .to_onnx import module_to_onnx

        shape = normalize_shape(input_shape)
        return self.measure(module_to_onnx(module, shape, opset), shape)

    def measure_many(self, items: list[tuple[bytes, Shape]]) -> list[LatencyStats]:
        """Measure several models; the default measures them one after another. When any failed, the first
        failure is raised once all were tried, with `.results` holding every result or error in order."""
        results: list = []
        for onnx, shape in items:
            try:
                results.append(self.measure(onnx, shape))
            except MeasurementError as e:
                results.append(e)
        return all_measured(results)

    def close(self) -> None:
        """Release what the backend holds (sessions, connections); a no-op by default."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"
