"""Torch on a CUDA GPU: times a torch module itself (eager, or replayed as a CUDA graph).

This backend measures *modules*, not ONNX: `measure_module(module, input_shape)`. `measure(onnx, ...)` raises
MeasurementError saying so (torch cannot run ONNX); `edgeprune.latency.measure(module, ...)` routes a module here
and uses its ONNX export only as the cache key.

Protocol: module and a random input on the GPU, `torch.inference_mode()`, `warmup` untimed calls (with
`cuda_graph`, the warm-up runs on a side stream, then one graph is captured), then `runs` samples, each one call
(or one graph replay) between two CUDA events, synchronised on the end event. torch.cuda is touched only when
measuring or fingerprinting, so importing this module needs no GPU.
"""

from __future__ import annotations

from deploy.stats import LatencyStats

from .base import LatencyBackend, MeasurementError, Shape, normalize_shape


def _cuda():
    import torch

    if not torch.cuda.is_available():
        raise MeasurementError("the torch-cuda backend needs a CUDA GPU and a CUDA build of torch; this machine "
                               f"has none (torch {torch.__version__}). Use the ort or remote backend instead.",
                               "torch-cuda", "no CUDA GPU")
    return torch


class TorchCudaBackend(LatencyBackend):
    name = "torch-cuda"
    times_modules = True

    def __init__(self, cuda_graph: bool = False, warmup: int = 20, runs: int = 100, device: str = "cuda:0",
                 precision: str = "fp32") -> None:
        if precision not in ("fp32", "fp16"):
            raise ValueError(f"torch-cuda precision must be fp32 or fp16, not {precision!r}")
        self.cuda_graph, self.warmup, self.runs = bool(cuda_graph), int(warmup), int(runs)
        self.device, self.precision = device, precision

    def fingerprint(self) -> dict:
        torch = _cuda()
        dev = torch.device(self.device)
        props = torch.cuda.get_device_properties(dev)
        capability = list(torch.cuda.get_device_capability(dev))
        return {"backend": "torch-cuda", "device": props.name, "capability": capability,
                "torch": torch.__version__, "cuda": torch.version.cuda,
                "cudnn": torch.backends.cudnn.version(), "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
                "cuda_graph": self.cuda_graph, "precision": self.precision}

    def measure(self, onnx: bytes, input_shape: Shape) -> LatencyStats:
        raise MeasurementError("the torch-cuda backend times torch modules, not ONNX bytes: call "
                               "measure_module(module, input_shape) or edgeprune.latency.measure(module, ...); "
                               "for ONNX on a GPU use the tensorrt backend", "torch-cuda", "ONNX input")

    def measure_module(self, module, input_shape: Shape, opset: int = 13) -> LatencyStats:  # opset: no export
        torch = _cuda()
        shape = normalize_shape(input_shape)
        dev = torch.device(self.device)
        dtype = torch.float16 if self.precision == "fp16" else torch.float32
        net = module.to(dev, dtype).eval()
        x = torch.randn(shape, device=dev, dtype=dtype)
        samples = []
        with torch.inference_mode():
            if self.cuda_graph:
                side = torch.cuda.Stream(dev)
                side.wait_stream(torch.cuda.current_stream(dev))
                with torch.cuda.stream(side):
                    for _ in range(max(self.warmup, 3)):
                        net(x)
                torch.cuda.current_stream(dev).wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    net(x)
                step = graph.replay
            else:
                def step():
                    net(x)
                for _ in range(self.warmup):
                    step()
            torch.cuda.synchronize(dev)
            for _ in range(self.runs):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                step()
                end.record()
                end.synchronize()
                samples.append(start.elapsed_time(end))
        info = dict(self.fingerprint(), runner="torch", input_shape=list(shape))
        return LatencyStats.from_samples(samples, warmup=self.warmup, info=info)
