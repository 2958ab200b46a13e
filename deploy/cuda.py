"""CUDA from Python for running TensorRT engines: pycuda (what a TX2 on JetPack 4.6 has) or cuda-python (Orin,
JetPack 5/6), whichever imports; and the GPU's name."""

from typing import TYPE_CHECKING, Any, Tuple, Union

if TYPE_CHECKING:
    import numpy as np


class _PyCuda(object):
    name = "pycuda"

    def __init__(self) -> None:
        import pycuda.driver as cuda

        cuda.init()
        self.cuda = cuda
        self.ctx = cuda.Device(0).retain_primary_context()  # the context TensorRT's runtime API uses
        self.ctx.push()
        self.stream = cuda.Stream()
        self.stream_handle = self.stream.handle
        self._allocs = {}

    def device_name(self) -> str:
        return self.cuda.Device(0).name()

    def alloc(self, nbytes: int) -> int:
        a = self.cuda.mem_alloc(max(int(nbytes), 1))
        self._allocs[int(a)] = a
        return int(a)

    def free(self, ptr: int) -> None:
        a = self._allocs.pop(ptr, None)
        if a is not None:
            a.free()

    # Synchronous copies: pycuda wants page-locked memory for async ones, and copies are never timed here.
    # They run on the legacy default stream, which waits for work queued on self.stream (a blocking stream).
    def htod(self, ptr: int, array: "np.ndarray") -> None:
        self.cuda.memcpy_htod(ptr, array)

    def dtoh(self, array: "np.ndarray", ptr: int) -> None:
        self.cuda.memcpy_dtoh(array, ptr)

    def sync(self) -> None:
        self.stream.synchronize()

    def event_pair(self) -> Tuple[Any, Any]:
        return self.cuda.Event(), self.cuda.Event()

    def record(self, event: Any) -> None:
        event.record(self.stream)

    def elapsed_ms(self, start: Any, end: Any) -> float:
        end.synchronize()
        return end.time_since(start)

    def close(self) -> None:
        for ptr in list(self._allocs):
            self.free(ptr)
        self.ctx.pop()


def _cudart():
    try:
        from cuda.bindings import runtime  # cuda-python ≥ 12.6
    except ImportError:
        from cuda import cudart as runtime  # older cuda-python (JetPack 5/6 era)
    return runtime


class _CudaPython(object):
    name = "cuda-python"

    def __init__(self) -> None:
        self.rt = _cudart()
        self._check(self.rt.cudaSetDevice(0))
        self.stream = self._check(self.rt.cudaStreamCreate())
        self.stream_handle = int(self.stream)
        self._allocs = set()

    def _check(self, result):
        """cuda-python returns (error, values...): raise on an error, return the value(s)."""
        err, values = result[0], result[1:]
        if int(err) != 0:
            text = self.rt.cudaGetErrorString(err)[1]
            text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
            raise RuntimeError("CUDA error {}: {}".format(int(err), text))
        return values[0] if len(values) == 1 else (values or None)

    def device_name(self) -> str:
        prop = self._check(self.rt.cudaGetDeviceProperties(0))
        name = prop.name
        return (name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)).rstrip("\x00")

    def alloc(self, nbytes: int) -> int:
        ptr = int(self._check(self.rt.cudaMalloc(max(int(nbytes), 1))))
        self._allocs.add(ptr)
        return ptr

    def free(self, ptr: int) -> None:
        if ptr in self._allocs:
            self._allocs.discard(ptr)
            self._check(self.rt.cudaFree(ptr))

    def htod(self, ptr: int, array: "np.ndarray") -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self.rt.cudaMemcpyAsync(ptr, array.ctypes.data, array.nbytes, kind, self.stream))

    def dtoh(self, array: "np.ndarray", ptr: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self.rt.cudaMemcpyAsync(array.ctypes.data, ptr, array.nbytes, kind, self.stream))

    def sync(self) -> None:
        self._check(self.rt.cudaStreamSynchronize(self.stream))

    def event_pair(self) -> Tuple[Any, Any]:
        return self._check(self.rt.cudaEventCreate()), self._check(self.rt.cudaEventCreate())

    def record(self, event: Any) -> None:
        self._check(self.rt.cudaEventRecord(event, self.stream))

    def elapsed_ms(self, start: Any, end: Any) -> float:
        self._check(self.rt.cudaEventSynchronize(end))
        return float(self._check(self.rt.cudaEventElapsedTime(start, end)))

    def close(self) -> None:
        for ptr in list(self._allocs):
            self.free(ptr)
        self._check(self.rt.cudaStreamDestroy(self.stream))


def cuda_backend() -> Union[_PyCuda, _CudaPython]:
    """A CUDA helper on device 0 from pycuda, else cuda-python; ImportError naming both when neither works."""
    errors = []
    for cls in (_PyCuda, _CudaPython):
        try:
            return cls()
        except Exception as e:  # ImportError, or a driver error on a machine without a GPU
            errors.append("{}: {}: {}".format(cls.name, type(e).__name__, e))
    raise ImportError("no usable CUDA from Python (install pycuda on JetPack 4.6, cuda-python on JetPack 5/6): "
                      + "; ".join(errors))


def device_name() -> str:
    """GPU name from CUDA, else the Jetson model from the device tree, else 'unknown'."""
    try:
        backend = cuda_backend()
        try:
            return backend.device_name()
        finally:
            backend.close()
    except Exception:
        pass
    try:
        with open("/proc/device-tree/model") as f:
            return f.read().strip("\x00\n ")
    except OSError:
        return "unknown"
