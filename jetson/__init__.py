"""On-device tooling for a Jetson board: the profiling agent, tegrastats sampling, board facts, setup scripts.

Torch-free and Python 3.6 compatible (a TX2 stays on JetPack 4.6), checked with `vermin -t=3.6-`. Standard library
only at import time; numpy, onnx, onnxruntime and TensorRT (through `deploy`) are imported inside the functions
that need them.

Not an installed package: NVIDIA's jetson-inference owns `import jetson` on many boards, so this runs from a
checkout (`python3 -m jetson.agent` in the repository root, where the local folder wins) or from the L4T container.
"""

__version__ = "0.1.0"
