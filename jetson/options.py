"""The profiling options a request may set, their defaults and checks (docs/jetson.md lists them)."""

from typing import TYPE_CHECKING, Any, Dict, List, Optional

from deploy.protocol import PRECISIONS, default_precision  # noqa: F401 (PRECISIONS re-exported)

if TYPE_CHECKING:
    from .limits import Limits

BACKENDS = ("trt", "trtexec", "onnxruntime")
OPTION_DEFAULTS = {
    "backend": "trt", "precision": None, "input_shape": None, "warmup": 10, "iterations": 100, "threads": None,
    "tegrastats": True, "layers": False, "workspace_mb": 1024, "dla_core": None, "warmup_ms": None,
    "time_limit_s": None,
}
DEFAULT_TIME_LIMIT_S, MAX_TIME_LIMIT_S, MAX_WORKSPACE_MB = 1800.0, 7200.0, 1 << 20  # without an agent's Limits


class OptionError(ValueError):
    """Bad input from a client: the message says what is wrong, `field` names the option or body field."""

    def __init__(self, message: str, field: Optional[str] = None) -> None:
        ValueError.__init__(self, message)
        self.field = field


def _int(opts, name, lo, hi, optional=False):
    v = opts[name]
    if v is None and optional:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise OptionError("{} must be an integer from {} to {}, got {!r}".format(name, lo, hi, v), name)
    return v


def _bool(opts, name):
    if not isinstance(opts[name], bool):
        raise OptionError("{} must be true or false, got {!r}".format(name, opts[name]), name)
    return opts[name]


def _seconds(opts, name, default, maximum):
    v = opts[name]
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= maximum:
        raise OptionError("{} must be a number of seconds above 0 and at most this agent's maximum of {:g}, got "
                          "{!r}".format(name, maximum, v), name)
    return float(v)


def parse_shape(value: Any) -> Optional[List[int]]:
    """[1, 3, 640, 640] from a list of ints or text such as '1,3,640,640' or '1x3x640x640'; None stays None."""
    if value is None:
        return None
    dims = value
    if isinstance(value, str):
        try:
            dims = [int(d) for d in value.replace("x", ",").split(",") if d.strip()]
        except ValueError:
            dims = None
    ok = isinstance(dims, (list, tuple)) and 1 <= len(dims) <= 8 and all(
        isinstance(d, int) and not isinstance(d, bool) and 0 < d <= 65536 for d in dims)
    if not ok:
        raise OptionError("input_shape must be 1 to 8 positive integers such as [1, 3, 640, 640], got {!r}"
                          .format(value), "input_shape")
    return [int(d) for d in dims]


def _check_combinations(opts):
    cpu = opts["backend"] == "onnxruntime"
    if opts["precision"] not in PRECISIONS:
        raise OptionError("precision must be one of {}, got {!r}".format(", ".join(PRECISIONS), opts["precision"]),
                          "precision")
    if cpu and opts["precision"] != "fp32":
        raise OptionError("onnxruntime runs the model as exported (fp32); use backend trt or trtexec for {}"
                          .format(opts["precision"]), "precision")
    if opts["layers"] and opts["backend"] != "trtexec":
        raise OptionError("a per-layer profile comes from trtexec: set backend to trtexec", "layers")
    if opts["warmup_ms"] is not None and opts["backend"] != "trtexec":
        raise OptionError("warmup_ms is trtexec's time-based warm-up; the other backends take warmup (runs)",
                          "warmup_ms")


def parse_options(raw: Any, limits: Optional["Limits"] = None) -> Dict[str, Any]:
    """Validated options with defaults filled in; raises OptionError naming the field. `limits` (a
    jetson.limits.Limits) gives the default and maximum time_limit_s and the largest workspace_mb."""
    if not isinstance(raw, dict):
        raise OptionError("options must be a JSON object", "options")
    for name in sorted(raw):
        if name not in OPTION_DEFAULTS:
            raise OptionError("unknown option {!r} (known: {})".format(name, ", ".join(sorted(OPTION_DEFAULTS))),
                              name)
    opts = dict(OPTION_DEFAULTS)
    opts.update(raw)
    if opts["backend"] not in BACKENDS:
        raise OptionError("unknown backend {!r}: use one of {}".format(opts["backend"], ", ".join(BACKENDS)),
                          "backend")
    opts["precision"] = opts["precision"] or default_precision(opts["backend"])
    _check_combinations(opts)
    opts["input_shape"] = parse_shape(opts["input_shape"])
    default_s = limits.job_time_limit_s if limits else DEFAULT_TIME_LIMIT_S
    max_s = limits.max_job_time_limit_s if limits else MAX_TIME_LIMIT_S
    opts.update(warmup=_int(opts, "warmup", 0, 100000), iterations=_int(opts, "iterations", 1, 1000000),
                threads=_int(opts, "threads", 1, 1024, optional=True),
                workspace_mb=_int(opts, "workspace_mb", 16, limits.max_workspace_mb if limits else MAX_WORKSPACE_MB),
                dla_core=_int(opts, "dla_core", 0, 3, True),
                warmup_ms=_int(opts, "warmup_ms", 0, 600000, optional=True),
                tegrastats=_bool(opts, "tegrastats"), layers=_bool(opts, "layers"),
                time_limit_s=_seconds(opts, "time_limit_s", default_s, max_s))
    return opts
