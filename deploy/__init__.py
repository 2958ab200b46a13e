"""Device-side tools: ONNX → TensorRT, runners and latency statistics.

Torch-free and Python 3.6 compatible (a Jetson TX2 stays on JetPack 4.6), checked with `vermin -t=3.6-`.
Heavy dependencies (onnxruntime, tensorrt, pycuda / cuda-python) are imported inside the functions that use them.
"""

__version__ = "0.1.0"
