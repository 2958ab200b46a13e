"""What the host's remote backend and the board agent must agree on, written once: both sides import it
(deploy/ is installed on the host and ships in the checkout on the board)."""

TOKEN_ENV = "EDGEPRUNE_AGENT_TOKEN"  # the shared secret's variable, read by the agent and by the host's client
PRECISIONS = ("fp32", "fp16", "int8")


def default_precision(backend: str) -> str:
    """onnxruntime runs the model as it is (fp32); TensorRT and trtexec build fp16 engines unless told otherwise."""
    return "fp32" if backend == "onnxruntime" else "fp16"
