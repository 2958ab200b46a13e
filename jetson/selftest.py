"""The board self-test: run it first on a new board, before the agent or a search.

    python3 -m jetson.selftest [--out DIR]

Checks, in order, and prints one table with a status and a fix per row:

 1. the board: model, L4T release and JetPack, Python, memory
 2. TensorRT: the Python bindings' version (and the Debian package's)
 3. CUDA from Python: pycuda (JetPack 4) or cuda-python (JetPack 5/6), initialized on device 0
 4. trtexec: found, and its TensorRT version
 5. the reference: onnxruntime (or, without it, a pure-Python convolution) on a tiny conv model
 6. that model built into an engine through the Python API: build time, median latency, output vs the reference
 7. the same through trtexec: build and benchmark time, median latency, output vs the reference
 8. EfficientNMS_TRT accepted by TensorRT's ONNX parser (the NMS plugin exported YOLO detectors end with)
 9. tegrastats: a 2 s sample parsed (GPU load and EMC need root)
10. the power mode (`nvpmodel -q`) and 11. the clocks (`jetson_clocks --show`, else sysfs)

It writes a bundle of the raw outputs to DIR (default `./edgeprune-selftest-<host>-<time>/`): selftest.json and
selftest.txt (the table), nv_tegra_release.txt, nvpmodel-q.txt, nvpmodel-q-verbose.txt, jetson_clocks-show.txt,
tegrastats.log, trtexec-help.txt, trtexec/ (the build-and-benchmark log, --exportTimes, exported outputs), the
two ONNX models and the engines. Copy the text files to tests/fixtures/device/ (with a row in SOURCES.md) to make
this board's formats test fixtures.

Exit status: 0 every check passed (or only warned), 1 a check failed, 2 not a Jetson with TensorRT (nothing on
the device side could be checked; this is what a development machine reports).
"""

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from typing import Callable, List, Optional, Sequence, Union

from . import board, selftest_engines, tinyonnx
from .backends import cuda_from_python, find_trtexec, trt_python_version


class SelfTest(object):
    OK, FAIL, WARN, ABSENT, SKIP = "ok", "FAIL", "warn", "absent", "skipped"

    def __init__(self, out: Union[str, os.PathLike], board_root: str = "/", trtexec: Optional[str] = None,
                 tegrastats: str = "tegrastats", run: Callable[[List[str]], Optional[str]] = board.run_command,
                 tegrastats_s: float = 2.0) -> None:
        self.out = os.path.abspath(out)
        os.makedirs(self.out, exist_ok=True)
        self.root, self.trtexec, self.tegrastats, self.run_cmd = board_root, trtexec, tegrastats, run
        self.tegrastats_s = float(tegrastats_s)
        self.rows, self.facts, self.timings = [], {}, {}
        self.onnx_path = os.path.join(self.out, "selftest-conv.onnx")
        with open(self.onnx_path, "wb") as f:
            f.write(tinyonnx.conv_model())
        self.reference, self.reference_source = tinyonnx.conv_reference(), "the pure-Python reference"

    def row(self, check: str, status: str, detail: str, fix: str = "") -> None:
        self.rows.append({"n": len(self.rows) + 1, "check": check, "status": status, "detail": detail, "fix": fix})

    def save(self, name: str, text: Optional[str]) -> None:
        if text is not None:
            with open(os.path.join(self.out, name), "w") as f:
                f.write(text)

    @property
    def jetson(self) -> bool:
        return bool(self.facts.get("model") or self.facts.get("l4t"))

    def run(self) -> int:
        for name, check in CHECKS:
            try:
                check(self)
            except Exception as e:  # a check that breaks is a row, never the end of the self-test
                self.row(name, self.FAIL, "the check itself failed: {}: {}".format(
                    type(e).__name__, str(e).strip().splitlines()[0] if str(e).strip() else ""),
                    "keep the bundle and report it")
        self.write_bundle()
        return self.exit_code()

    def exit_code(self) -> int:
        if any(r["status"] == self.FAIL for r in self.rows):
            return 1
        found_trt = self.facts.get("tensorrt_python") or self.facts.get("trtexec_path")
        return 0 if self.jetson and found_trt else 2

    def verdict(self) -> str:
        code = self.exit_code()
        if code == 1:
            return "FAILED: fix the rows marked FAIL (exit 1)"
        if code == 2:
            return "NOT A JETSON WITH TENSORRT: {} and TensorRT {}; nothing on the device side was checked " \
                   "(exit 2)".format("the board was found" if self.jetson else "no Jetson board was found",
                                     "was found" if self.facts.get("tensorrt_python") else "is absent")
        rest = sum(1 for r in self.rows if r["status"] not in (self.OK, self.SKIP))
        return "PASSED: this board is ready for the agent (exit 0){}".format(
            "; {} row(s) absent or warned: see their fix".format(rest) if rest else "")

    def table(self) -> str:
        head = ("#", "check", "status", "detail", "fix")
        rows = [(str(r["n"]), r["check"], r["status"], r["detail"], r["fix"] or "-") for r in self.rows]
        widths = [max(len(x[i]) for x in [head] + rows) for i in range(4)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4] for r in [head] + rows]
        lines.insert(1, "  ".join("-" * w for w in widths) + "  ---")
        return "\n".join(lines + ["", "status: " + self.verdict()])

    def write_bundle(self) -> None:
        self.save("selftest.txt", self.table() + "\n")
        doc = {"rows": self.rows, "facts": self.facts, "timings": self.timings, "verdict": self.verdict(),
               "exit_status": self.exit_code(), "python": sys.version.split()[0], "host": socket.gethostname(),
               "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        self.save("selftest.json", json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")


# ---------------------------------------------------------------- the checks that need no TensorRT

def check_board(st: SelfTest) -> None:
    facts = board.static_facts(st.root, st.run_cmd)
    st.facts.update(model=facts["model"], l4t=facts["l4t"], jetpack=facts["jetpack"], python=facts["python"],
                    machine=facts["machine"], memory=board.memory(st.root))
    release = board._read(st.root, "/etc/nv_tegra_release")
    st.save("nv_tegra_release.txt", release)
    total = st.facts["memory"].get("total_mb")
    if not st.jetson:
        return st.row("board (L4T / JetPack)", st.ABSENT, "not a Jetson: no /etc/nv_tegra_release, no device-tree "
                      "model ({} {}, Python {})".format(platform.system(), facts["machine"], facts["python"]),
                      "run the self-test on the board itself")
    detail = "{}, L4T {} = JetPack {}, Python {}, {} MB".format(facts["model"] or "unknown model", facts["l4t"],
                                                                facts["jetpack"], facts["python"], total)
    if not facts["l4t"]:
        return st.row("board (L4T / JetPack)", st.WARN, detail, "no /etc/nv_tegra_release: flash L4T / JetPack")
    st.row("board (L4T / JetPack)", st.OK, detail)


def check_tensorrt(st: SelfTest) -> None:
    version = trt_python_version()
    package = None if version else board.tensorrt_version(st.root, st.run_cmd)  # the Debian packages
    st.facts.update(tensorrt_python=version, tensorrt_package=package)
    if version:
        return st.row("TensorRT", st.OK, "Python bindings {}".format(version))
    if package:
        return st.row("TensorRT", st.FAIL, "TensorRT {} is installed but its Python bindings do not import".format(
            package), "sudo apt install python3-libnvinfer (JetPack's TensorRT Python bindings)")
    st.row("TensorRT", st.ABSENT, "no TensorRT: `import tensorrt` fails and no libnvinfer package",
           "sudo apt install nvidia-jetpack (TensorRT comes with JetPack)")


def check_cuda(st: SelfTest) -> None:
    module = cuda_from_python()
    st.facts["cuda_python"] = module
    if not module:
        return st.row("CUDA from Python", st.ABSENT, "neither pycuda nor cuda-python is installed",
                      "pip3 install --user pycuda (JetPack 4) or cuda-python (JetPack 5/6)")
    from deploy.trt_run import cuda_backend
    try:
        backend = cuda_backend()
    except ImportError as e:
        return st.row("CUDA from Python", st.FAIL, str(e)[:200], "check the CUDA driver (is this a GPU board?)")
    try:
        st.facts["cuda_python_ok"] = True
        st.row("CUDA from Python", st.OK, "{} on {}".format(backend.name, backend.device_name()))
    finally:
        backend.close()


def check_trtexec(st: SelfTest) -> None:
    path = find_trtexec(st.trtexec)
    st.facts["trtexec_path"] = path
    if not path:
        return st.row("trtexec", st.ABSENT, "no executable trtexec ({})".format(st.trtexec or "PATH, "
                      "/usr/src/tensorrt/bin/trtexec"), "sudo apt install tensorrt (samples: trtexec), or --trtexec")
    try:
        out = subprocess.run([path, "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        st.save("trtexec-help.txt", "\n".join(out.stdout.decode("utf-8", "replace").splitlines()[:60]) + "\n")
    except (OSError, subprocess.SubprocessError):
        pass
    from deploy.trt_build import version_string
    from deploy.trtexec import detect_version
    version = detect_version(path)
    st.facts["trtexec_version"] = version_string(version)
    st.row("trtexec", st.OK, "{} (TensorRT {})".format(path, version_string(version)))


def check_reference(st: SelfTest) -> None:
    name = "reference output (onnxruntime)"
    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError as e:
        return st.row(name, st.WARN, "onnxruntime or numpy is missing ({}): outputs are compared with the "
                      "pure-Python reference".format(e), "pip3 install --user onnxruntime (JetPack 5/6; a Jetson Zoo "
                      "wheel on JetPack 4.6) to compare with onnxruntime")
    session = ort.InferenceSession(st.onnx_path, providers=["CPUExecutionProvider"])
    x = np.array(tinyonnx.conv_input(), dtype=np.float32).reshape(tinyonnx.CONV_INPUT)
    out = session.run(None, {"x": x})[0].reshape(-1).tolist()
    diff = selftest_engines.max_abs_diff(out, st.reference)
    if diff > selftest_engines.TOLERANCE:
        return st.row(name, st.FAIL, "onnxruntime {} and the pure-Python reference differ by {:.2g}".format(
            ort.__version__, diff), "report it: the self-test's model or onnxruntime is wrong")
    st.reference, st.reference_source = out, "onnxruntime"
    st.row(name, st.OK, "onnxruntime {} agrees with the pure-Python reference (max |diff| {:.2g})".format(
        ort.__version__, diff))


def check_tegrastats(st: SelfTest) -> None:
    name = "tegrastats sample"
    exe = shutil.which(st.tegrastats)
    if not exe:
        return st.row(name, st.ABSENT, "no tegrastats ({})".format(st.tegrastats),
                      "tegrastats comes with L4T (/usr/bin/tegrastats): run on the board")
    from .tegrastats import parse_file
    log = os.path.join(st.out, "tegrastats.log")
    with open(log, "wb") as f:
        proc = subprocess.Popen([exe, "--interval", "500"], stdout=f, stderr=subprocess.STDOUT)
        time.sleep(st.tegrastats_s)
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    samples, skipped = parse_file(log)
    if not samples:
        return st.row(name, st.FAIL, "no line of tegrastats' output parsed ({} skipped)".format(skipped),
                      "keep tegrastats.log from the bundle and report it (a new format?)")
    s = samples[-1]
    rails = ", ".join(sorted(s.rails)) or "none"
    detail = "{} lines parsed, RAM {}/{} MB, GPU load {}, rails: {}".format(len(samples), s.ram_used_mb,
                                                                           s.ram_total_mb, s.gpu_load, rails)
    if s.gpu_load is None:
        return st.row(name, st.WARN, detail, "run as root (sudo) for GPU load (GR3D) and EMC")
    st.row(name, st.OK, detail)


def check_power_mode(st: SelfTest) -> None:
    text = st.run_cmd(["nvpmodel", "-q"])
    st.save("nvpmodel-q.txt", text)
    st.save("nvpmodel-q-verbose.txt", st.run_cmd(["nvpmodel", "-q", "--verbose"]))
    mode = board.parse_nvpmodel(text)
    st.facts["power_mode"] = mode
    if mode is None:
        return st.row("power mode", st.ABSENT if not st.jetson else st.FAIL, "`nvpmodel -q` gave nothing readable",
                      "nvpmodel comes with L4T; on a board: sudo nvpmodel -q")
    st.row("power mode", st.OK, "{} (id {})".format(mode["name"], mode["id"]))


def check_clocks(st: SelfTest) -> None:
    st.save("jetson_clocks-show.txt", st.run_cmd(["jetson_clocks", "--show"]))
    if not st.jetson:
        return st.row("clocks", st.ABSENT, "not a Jetson", "run on the board")
    c = board.clocks(st.root, st.run_cmd)
    st.facts["clocks"] = c
    if c["pinned"] is None:
        return st.row("clocks", st.WARN, "neither `jetson_clocks --show` nor sysfs could be read", "run as root")
    if not c["pinned"]:
        return st.row("clocks", st.WARN, "below their maximum: {} (from {})".format(", ".join(c["not_at_max"]),
                      c["source"]), "sudo jetson_clocks (jetson/setup/setup_board.sh does it at every start)")
    st.row("clocks", st.OK, "pinned at their maximum (from {})".format(c["source"]))


CHECKS = [("board (L4T / JetPack)", check_board), ("TensorRT", check_tensorrt), ("CUDA from Python", check_cuda),
          ("trtexec", check_trtexec), ("reference output (onnxruntime)", check_reference),
          ("engine via the Python API", selftest_engines.check_python_engine),
          ("engine via trtexec", selftest_engines.check_trtexec_engine),
          ("EfficientNMS_TRT in the ONNX parser", selftest_engines.check_efficientnms),
          ("tegrastats sample", check_tegrastats), ("power mode", check_power_mode), ("clocks", check_clocks)]


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m jetson.selftest", description="check a Jetson board for edgeprune")
    p.add_argument("--out", default=None, help="bundle folder (default ./edgeprune-selftest-<host>-<time>)")
    p.add_argument("--trtexec", default=None, help="trtexec binary (default: $TRTEXEC, JetPack's, PATH)")
    p.add_argument("--tegrastats", default="tegrastats", help="tegrastats binary")
    p.add_argument("--tegrastats-s", type=float, default=2.0, help="how long to sample tegrastats")
    p.add_argument("--board-root", default="/", help=argparse.SUPPRESS)  # a fake filesystem root (tests)
    a = p.parse_args(argv)
    out = a.out or "edgeprune-selftest-{}-{}".format(socket.gethostname(), time.strftime("%Y%m%d-%H%M%S"))
    st = SelfTest(out, a.board_root, a.trtexec, a.tegrastats, tegrastats_s=a.tegrastats_s)
    code = st.run()
    print(st.table())
    print("bundle: {}".format(st.out))
    return code


if __name__ == "__main__":
    sys.exit(main())
