"""Facts about the board a measurement ran on: model, L4T / JetPack, TensorRT, CUDA, power mode, clocks, thermals.

Every reader takes `root` (the filesystem root, "/" on a board; a folder in tests) and, where it runs a command,
`run` (a callable `run(argv) -> stdout or None`). A missing file, a command that is absent or fails (`jetson_clocks
--show` needs root), or text in an unexpected format gives None, never an exception: a latency figure is still
worth having when one fact about the board is not.
"""

import glob
import json
import os
import platform
import re
import socket
import subprocess
from typing import Any, Callable, Dict, List, Optional

# L4T release → JetPack, from NVIDIA's release notes. Unlisted releases fall back to _JETPACK_BY_MAJOR_MINOR.
_JETPACK = {
    "32.6.1": "4.6", "32.7.1": "4.6.1", "32.7.2": "4.6.2", "32.7.3": "4.6.3", "32.7.4": "4.6.4",
    "32.7.5": "4.6.5", "32.7.6": "4.6.6",
    "35.1.0": "5.0.2", "35.2.1": "5.1", "35.3.1": "5.1.1", "35.4.1": "5.1.2", "35.5.0": "5.1.3",
    "35.6.0": "5.1.4", "35.6.1": "5.1.5",
    "36.3.0": "6.0", "36.4.0": "6.1", "36.4.3": "6.2", "36.4.4": "6.2.1",
}
_JETPACK_BY_MAJOR_MINOR = {"32.7": "4.6.x", "32.6": "4.6", "32.5": "4.5.x", "32.4": "4.4.x", "35": "5.x",
                           "36.3": "6.0", "36.4": "6.1/6.2"}


def run_command(argv: List[str], timeout: float = 10.0) -> Optional[str]:
    """stdout of a command that exited 0, else None (absent, failed, timed out)."""
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True,
                           timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    return p.stdout if p.returncode == 0 else None


def _path(root, path):
    return os.path.join(root, path.lstrip("/"))


def _read(root, path):
    try:
        with open(_path(root, path), "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return None


def board_model(root: str = "/") -> Optional[str]:
    text = (_read(root, "/proc/device-tree/model") or "").replace("\x00", "").strip()
    return text or None


def l4t_release(root: str = "/") -> Optional[str]:
    """'32.7.1' from `# R32 (release), REVISION: 7.1, ...` in /etc/nv_tegra_release."""
    text = _read(root, "/etc/nv_tegra_release") or ""
    m = re.search(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*(\d+)\.(\d+)", text)
    return "{}.{}.{}".format(*m.groups()) if m else None


def jetpack_for(l4t: Optional[str]) -> Optional[str]:
    if not l4t:
        return None
    if l4t in _JETPACK:
        return _JETPACK[l4t]
    major, minor = (l4t.split(".") + ["0"])[:2]
    return _JETPACK_BY_MAJOR_MINOR.get(major + "." + minor) or _JETPACK_BY_MAJOR_MINOR.get(major)


def _version_prefix(text):
    m = re.search(r"(\d+(?:\.\d+)+)", text or "")
    return m.group(1) if m else None


def tensorrt_version(root: str = "/", run: Callable[[List[str]], Optional[str]] = run_command) -> Optional[str]:
    """From the TensorRT Python bindings on this machine (root "/"), else from the Debian packages."""
    if root == "/":
        try:
            from deploy.trt_build import tensorrt_version as from_python
            version = from_python()
            if version:
                return version
        except Exception:  # deploy.trt_build absent or broken: the packages still say which TensorRT is here
            pass
    for package in ("tensorrt", "libnvinfer10", "libnvinfer8", "nvidia-tensorrt"):
        version = _version_prefix(run(["dpkg-query", "-W", "-f", "${Version}", package]))
        if version:
            return version
    return None


def cuda_version(root: str = "/", run: Callable[[List[str]], Optional[str]] = run_command) -> Optional[str]:
    """From /usr/local/cuda/version.json (CUDA ≥ 11), version.txt (10.2), or `nvcc --version`."""
    text = _read(root, "/usr/local/cuda/version.json")
    if text:
        try:
            return json.loads(text)["cuda"]["version"]
        except (ValueError, KeyError, TypeError):
            pass
    version = _version_prefix(_read(root, "/usr/local/cuda/version.txt"))
    if version:
        return version
    out = run([_path(root, "/usr/local/cuda/bin/nvcc"), "--version"]) or ""
    m = re.search(r"release \S+ V(\d+(?:\.\d+)+)", out) or re.search(r"release (\d+(?:\.\d+)+)", out)
    return m.group(1) if m else None


def parse_nvpmodel(text: Optional[str]) -> Optional[Dict[str, Any]]:
    """{'name': 'MAXN', 'id': 0} from `nvpmodel -q` (`NV Power Mode: MAXN` then the id on its own line)."""
    m = re.search(r"NV Power Mode:\s*(\S+)\s*\n\s*(\d+)", text or "")
    if m:
        return {"name": m.group(1), "id": int(m.group(2))}
    m = re.search(r"NV Power Mode:\s*(\S+)", text or "")
    return {"name": m.group(1), "id": None} if m else None


def power_mode(run: Callable[[List[str]], Optional[str]] = run_command) -> Optional[Dict[str, Any]]:
    return parse_nvpmodel(run(["nvpmodel", "-q"]))


_CLOCK_LINE = re.compile(r"^(cpu\d+|GPU|EMC)\s*:?\s+(.*)$")


def parse_jetson_clocks(text: Optional[str]) -> Dict[str, Dict[str, int]]:
    """{name: {'min', 'max', 'cur'}} (kHz or Hz as printed) for the online CPUs, GPU and EMC from
    `jetson_clocks --show` (DLA and PVA lines are left out: idle accelerators are gated, not slow)."""
    clocks = {}
    for line in (text or "").splitlines():
        m = _CLOCK_LINE.match(line.strip())
        if not m:
            continue
        fields = dict(re.findall(r"(\w+)=(\S+)", m.group(2)))
        if fields.get("Online") == "0" or "MaxFreq" not in fields or "CurrentFreq" not in fields:
            continue
        try:
            clocks[m.group(1)] = {"min": int(fields.get("MinFreq", 0)), "max": int(fields["MaxFreq"]),
                                  "cur": int(fields["CurrentFreq"])}
        except ValueError:
            continue
    return clocks


def _sysfs_clocks(root):
    """Fallback without root: CPU cpufreq and GPU devfreq nodes are world-readable."""
    clocks = {}
    nodes = [(os.path.basename(os.path.dirname(d)), d, "scaling_{}_freq")
             for d in glob.glob(_path(root, "/sys/devices/system/cpu/cpu[0-9]*/cpufreq"))]
    nodes += [("GPU", d, "{}_freq") for d in glob.glob(_path(root, "/sys/class/devfreq/*"))
              if re.search(r"gp10b|gv11b|ga10b|gm20b|gpu", os.path.basename(d))]
    for name, folder, pattern in nodes:
        values = {}
        for key in ("min", "max", "cur"):
            text = _read("/", os.path.join(folder, pattern.format(key)))
            if text and text.strip().isdigit():
                values[key] = int(text.strip())
        if "max" in values and "cur" in values:
            clocks[name] = values
    return clocks


def clocks(root: str = "/", run: Callable[[List[str]], Optional[str]] = run_command) -> Dict[str, Any]:
    """Whether clocks are pinned (every CPU online, GPU and EMC at its maximum), from `jetson_clocks --show` or,
    without root, sysfs. `pinned` is None when nothing could be read."""
    source, found = "jetson_clocks --show", parse_jetson_clocks(run(["jetson_clocks", "--show"]))
    if not found:
        source, found = "sysfs", _sysfs_clocks(root)
    if not found:
        return {"pinned": None, "source": None, "not_at_max": [], "clocks": {}}
    below = sorted(name for name, c in found.items() if c["cur"] < c["max"])
    return {"pinned": not below, "source": source, "not_at_max": below, "clocks": found}


def temperatures(root: str = "/") -> Dict[str, float]:
    """Thermal zone type → °C from /sys/devices/virtual/thermal/thermal_zone*/{type,temp} (millidegrees)."""
    temps = {}
    for zone in sorted(glob.glob(_path(root, "/sys/devices/virtual/thermal/thermal_zone*"))):
        name, milli = _read("/", zone + "/type"), _read("/", zone + "/temp")
        try:
            value = int(milli.strip()) / 1000.0
        except (AttributeError, ValueError):
            continue
        if name and name.strip() and value > -40:  # -256 °C and the like: a sensor without a reading
            temps[name.strip()] = value
    return temps


def memory(root: str = "/") -> Dict[str, Optional[int]]:
    """{'total_mb', 'available_mb', 'free_mb'} from /proc/meminfo; values None when absent."""
    kb = dict(re.findall(r"^(\w+):\s+(\d+) kB", _read(root, "/proc/meminfo") or "", re.MULTILINE))

    def mb(key: str) -> Optional[int]:
        return int(kb[key]) // 1024 if key in kb else None
    return {"total_mb": mb("MemTotal"), "available_mb": mb("MemAvailable"), "free_mb": mb("MemFree")}


def static_facts(root: str = "/", run: Callable[[List[str]], Optional[str]] = run_command) -> Dict[str, Any]:
    """What does not change while the agent runs."""
    l4t = l4t_release(root)
    return {
        "model": board_model(root), "l4t": l4t, "jetpack": jetpack_for(l4t),
        "tensorrt": tensorrt_version(root, run), "cuda": cuda_version(root, run),
        "python": platform.python_version(), "hostname": socket.gethostname(), "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }


def dynamic_facts(root: str = "/", run: Callable[[List[str]], Optional[str]] = run_command) -> Dict[str, Any]:
    """What can change between two measurements (someone runs nvpmodel, the board warms up)."""
    return {"power_mode": power_mode(run), "clocks": clocks(root, run), "temperatures_c": temperatures(root),
            "memory": memory(root)}


def facts(root: str = "/", run: Callable[[List[str]], Optional[str]] = run_command) -> Dict[str, Any]:
    d = static_facts(root, run)
    d.update(dynamic_facts(root, run))
    return d


def fingerprint(static: Dict[str, Any], dynamic: Dict[str, Any]) -> Dict[str, Any]:
    """The few facts that make two latency figures comparable, stored with every result."""
    mode = dynamic.get("power_mode") or {}
    return {
        "model": static.get("model"), "l4t": static.get("l4t"), "jetpack": static.get("jetpack"),
        "tensorrt": static.get("tensorrt"), "cuda": static.get("cuda"), "hostname": static.get("hostname"),
        "power_mode": mode.get("name"), "power_mode_id": mode.get("id"),
        "clocks_pinned": (dynamic.get("clocks") or {}).get("pinned"),
    }
