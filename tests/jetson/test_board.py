"""Board facts read from a fake filesystem root and canned command output: a TX2 on JetPack 4.6, an AGX Orin on
JetPack 6.2, and an empty root where every fact is unknown and nothing raises."""

import json

import pytest

from jetson import board

TX2_CLOCKS = """SOC family:tegra186  Machine:quill
Online CPUs: 0-5
CPU Cluster Switching: Disabled
cpu0: Online=1 Governor=schedutil MinFreq=2035200 MaxFreq=2035200 CurrentFreq=2035200 IdleStates: C1=0 c7=0
cpu1: Online=0 Governor=schedutil MinFreq=2035200 MaxFreq=2035200 CurrentFreq=345600 IdleStates: C1=0 c6=0 c7=0
cpu3: Online=1 Governor=schedutil MinFreq=2035200 MaxFreq=2035200 CurrentFreq=2035200 IdleStates: C1=0 c7=0
GPU MinFreq=1300500000 MaxFreq=1300500000 CurrentFreq=1300500000
EMC MinFreq=40800000 MaxFreq=1866000000 CurrentFreq=1866000000 FreqOverride=1
Fan: speed=255
NV Power Mode: MAXN
"""

ORIN_CLOCKS = """SOC family:tegra234  Machine:Jetson AGX Orin
Online CPUs: 0-11
cpu0: Online=1 Governor=schedutil MinFreq=729600 MaxFreq=2201600 CurrentFreq=1190400 IdleStates: WFI=1 c7=1
cpu1: Online=1 Governor=schedutil MinFreq=729600 MaxFreq=2201600 CurrentFreq=2201600 IdleStates: WFI=1 c7=1
GPU MinFreq=306000000 MaxFreq=1300500000 CurrentFreq=306000000
EMC MinFreq=204000000 MaxFreq=3199000000 CurrentFreq=3199000000 FreqOverride=0
DLA0_CORE:   Online=1 MinFreq=0 MaxFreq=1600000000 CurrentFreq=0
NV Power Mode: MAXN
"""


def write(root, path, text):
    p = root / path.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(text.encode() if isinstance(text, str) else text)


def fake_run(outputs):
    """run(argv) → canned stdout by the command's first words, None for anything else (absent or failed)."""
    calls = []

    def run(argv, timeout=10.0):
        calls.append(list(argv))
        for prefix, out in outputs.items():
            if tuple(argv[:len(prefix)]) == prefix:
                return out
        return None
    run.calls = calls
    return run


@pytest.fixture
def tx2(tmp_path):
    write(tmp_path, "/proc/device-tree/model", b"NVIDIA Jetson TX2 Developer Kit\x00")
    write(tmp_path, "/etc/nv_tegra_release", "# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t186ref, "
                                             "EABI: aarch64, DATE: Sat Feb 19 17:07:00 UTC 2022\n")
    write(tmp_path, "/usr/local/cuda/version.txt", "CUDA Version 10.2.300\n")
    for i, (name, milli) in enumerate([("BCPU-therm", "35500"), ("GPU-therm", "33000"), ("PMIC-Die", "100000"),
                                       ("CV0-therm", "-256000")]):
        write(tmp_path, "/sys/devices/virtual/thermal/thermal_zone{}/type".format(i), name + "\n")
        write(tmp_path, "/sys/devices/virtual/thermal/thermal_zone{}/temp".format(i), milli + "\n")
    write(tmp_path, "/proc/meminfo", "MemTotal:        8047980 kB\nMemFree:         6054628 kB\n"
                                     "MemAvailable:    7013244 kB\nBuffers:           39856 kB\n")
    run = fake_run({("nvpmodel", "-q"): "NV Fan Mode:quiet\nNV Power Mode: MAXN\n0\n",
                    ("jetson_clocks", "--show"): TX2_CLOCKS,
                    ("dpkg-query", "-W", "-f", "${Version}", "tensorrt"): "8.2.1.8-1+cuda10.2"})
    return tmp_path, run


def test_tx2_on_jetpack_4_6(tx2):
    root, run = tx2
    f = board.facts(str(root), run)
    assert f["model"] == "NVIDIA Jetson TX2 Developer Kit"
    assert (f["l4t"], f["jetpack"], f["tensorrt"], f["cuda"]) == ("32.7.1", "4.6.1", "8.2.1.8", "10.2.300")
    assert f["power_mode"] == {"name": "MAXN", "id": 0}
    assert f["clocks"]["pinned"] is True and f["clocks"]["source"] == "jetson_clocks --show"
    assert set(f["clocks"]["clocks"]) == {"cpu0", "cpu3", "GPU", "EMC"}  # cpu1 is offline
    assert f["temperatures_c"] == {"BCPU-therm": 35.5, "GPU-therm": 33.0, "PMIC-Die": 100.0}
    assert f["memory"] == {"total_mb": 7859, "available_mb": 6848, "free_mb": 5912}
    assert f["cpu_count"] >= 1 and f["python"] and f["hostname"]
    json.dumps(f)  # what /v1/device sends
    fp = board.fingerprint(board.static_facts(str(root), run), board.dynamic_facts(str(root), run))
    assert fp["power_mode"] == "MAXN" and fp["power_mode_id"] == 0 and fp["clocks_pinned"] is True
    assert fp["jetpack"] == "4.6.1" and fp["tensorrt"] == "8.2.1.8"


def test_orin_on_jetpack_6_with_clocks_not_pinned(tmp_path):
    write(tmp_path, "/proc/device-tree/model", b"NVIDIA Jetson AGX Orin Developer Kit\x00")
    write(tmp_path, "/etc/nv_tegra_release", "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, "
                                             "EABI: aarch64, DATE: Wed Jan  8 01:49:37 UTC 2025\n")
    write(tmp_path, "/usr/local/cuda/version.json", json.dumps({"cuda": {"name": "CUDA SDK", "version": "12.6.68"}}))
    run = fake_run({("nvpmodel", "-q"): "NV Power Mode: MODE_30W\n2\n", ("jetson_clocks", "--show"): ORIN_CLOCKS,
                    ("dpkg-query", "-W", "-f", "${Version}", "libnvinfer10"): "10.3.0.30-1+cuda12.5"})
    f = board.facts(str(tmp_path), run)
    assert (f["l4t"], f["jetpack"], f["cuda"], f["tensorrt"]) == ("36.4.3", "6.2", "12.6.68", "10.3.0.30")
    assert f["power_mode"] == {"name": "MODE_30W", "id": 2}
    assert f["clocks"]["pinned"] is False and f["clocks"]["not_at_max"] == ["GPU", "cpu0"]
    assert "DLA0_CORE" not in f["clocks"]["clocks"]


def test_an_empty_root_gives_unknowns_never_an_exception(tmp_path):
    run = fake_run({})
    f = board.facts(str(tmp_path), run)
    for key in ("model", "l4t", "jetpack", "tensorrt", "cuda", "power_mode"):
        assert f[key] is None, key
    assert f["clocks"] == {"pinned": None, "source": None, "not_at_max": [], "clocks": {}}
    assert f["temperatures_c"] == {} and f["memory"] == {"total_mb": None, "available_mb": None, "free_mb": None}
    assert ["nvpmodel", "-q"] in run.calls


def test_garbage_files_give_unknowns(tmp_path):
    write(tmp_path, "/etc/nv_tegra_release", b"\xff\xfe not a release file")
    write(tmp_path, "/usr/local/cuda/version.json", "{not json")
    write(tmp_path, "/sys/devices/virtual/thermal/thermal_zone0/type", "GPU-therm")
    write(tmp_path, "/sys/devices/virtual/thermal/thermal_zone0/temp", "hot")
    run = fake_run({("nvpmodel", "-q"): "nvpmodel: cannot open /etc/nvpmodel.conf\n",
                    ("jetson_clocks", "--show"): "You must run this as root\n"})
    f = board.facts(str(tmp_path), run)
    assert f["l4t"] is None and f["cuda"] is None and f["power_mode"] is None and f["temperatures_c"] == {}
    assert f["clocks"]["pinned"] is None


def test_cuda_from_nvcc_when_no_version_file(tmp_path):
    nvcc = str(tmp_path / "usr/local/cuda/bin/nvcc")
    run = fake_run({(nvcc, "--version"): "nvcc: NVIDIA (R) Cuda compiler driver\n"
                                         "Cuda compilation tools, release 11.4, V11.4.315\n"})
    assert board.cuda_version(str(tmp_path), run) == "11.4.315"


def test_clocks_from_sysfs_without_root(tmp_path):
    for cpu, cur in (("cpu0", "2035200"), ("cpu1", "345600")):
        for key, value in (("min", "345600"), ("max", "2035200"), ("cur", cur)):
            write(tmp_path, "/sys/devices/system/cpu/{}/cpufreq/scaling_{}_freq".format(cpu, key), value + "\n")
    for key, value in (("min", "114750000"), ("max", "1300500000"), ("cur", "114750000")):
        write(tmp_path, "/sys/class/devfreq/17000000.gp10b/{}_freq".format(key), value)
    c = board.clocks(str(tmp_path), fake_run({}))
    assert c["source"] == "sysfs" and c["pinned"] is False and c["not_at_max"] == ["GPU", "cpu1"]


@pytest.mark.parametrize("l4t,jetpack", [
    ("32.6.1", "4.6"), ("32.7.1", "4.6.1"), ("32.7.6", "4.6.6"), ("32.7.9", "4.6.x"), ("35.2.1", "5.1"),
    ("35.4.1", "5.1.2"), ("35.9.9", "5.x"), ("36.3.0", "6.0"), ("36.4.0", "6.1"), ("36.4.3", "6.2"),
    ("36.4.9", "6.1/6.2"), ("31.1.0", None), (None, None),
])
def test_jetpack_from_l4t(l4t, jetpack):
    assert board.jetpack_for(l4t) == jetpack


def test_power_mode_without_an_id_line():
    assert board.parse_nvpmodel("NV Power Mode: 15W_2CORE\n") == {"name": "15W_2CORE", "id": None}
    assert board.parse_nvpmodel(None) is None


def test_run_command_never_raises():
    assert board.run_command(["echo", "hi"]) == "hi\n"
    assert board.run_command(["false"]) is None
    assert board.run_command(["/nonexistent/nvpmodel", "-q"]) is None
    assert board.run_command(["sleep", "5"], timeout=0.2) is None
