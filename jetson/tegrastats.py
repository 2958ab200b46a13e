"""Parse tegrastats lines and sample tegrastats while a model is being timed.

Formats handled (see tests/fixtures/device/ for real captures):

- JetPack 4 (TX2, Xavier): rails without a unit, `VDD_IN 3566/3566` (current/average mW); TX2 prints an odd
  `GR3D_FREQ @0` (a frequency without a load); Denver cores show as `off`.
- JetPack 4 (Nano): `POM_5V_IN 920/920` rails, `SWAP`, `IRAM`, `EMC_FREQ x%@MHz`, `GR3D_FREQ x%@MHz`.
- JetPack 5/6 (Orin): an optional `MM-DD-YYYY HH:MM:SS` prefix, rails with units `VDD_GPU_SOC 2797mW/2797mW`,
  lower-case temperatures `cpu@47.5C`, per-GPC GPU frequencies `GR3D_FREQ 43%@[305,0]`.
- Without root, tegrastats leaves out EMC_FREQ and GR3D_FREQ: those fields are then None.

A line without the `RAM used/totalMB` and `CPU [...]` fields (a shell prompt, `[sudo] password`, an error message,
a line cut short) is not tegrastats: it is skipped and counted, never read as numbers.
"""

import os
import re
import shutil
import subprocess
import threading
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

_TIMESTAMP = re.compile(r"^\s*(\d\d)-(\d\d)-(\d{4}) (\d\d:\d\d:\d\d)\s+")
_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB")
_SWAP = re.compile(r"\bSWAP (\d+)/(\d+)MB")
_CPU = re.compile(r"\bCPU \[([^\]]*)\]")
_CPU_CORE = re.compile(r"^(\d+)%(?:@(\d+))?$")
_EMC = re.compile(r"\bEMC_FREQ (\d+)%(?:@(\d+))?")
_GR3D = re.compile(r"\bGR3D_FREQ (?:(\d+)%)?(?:@\[?([\d,]+)\]?)?")
_TEMP = re.compile(r"(?<![\w@%])([A-Za-z][\w]*)@(-?\d+(?:\.\d+)?)C(?![\w])")
_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?=\s|$)")

# tegrastats prints -256C for a sensor that has no reading.
_NO_READING_C = -256.0

# Which rail is the whole module's input power, in order of preference. Boards without one (AGX Orin, AGX Xavier)
# get the sum of all rails they print, and the summary names them.
INPUT_RAILS = ("VDD_IN", "POM_5V_IN")


class Sample(object):
    """One tegrastats line. Missing fields are None (or empty); MB, %, MHz, °C and mW as tegrastats prints them."""

    def __init__(self, timestamp: Optional[str] = None, ram_used_mb: Optional[int] = None,
                 ram_total_mb: Optional[int] = None, swap_used_mb: Optional[int] = None,
                 swap_total_mb: Optional[int] = None, cpu_load: Optional[List[Optional[int]]] = None,
                 cpu_freq_mhz: Optional[List[Optional[int]]] = None, gpu_load: Optional[int] = None,
                 gpu_freq_mhz: Optional[int] = None, emc_load: Optional[int] = None, emc_freq_mhz: Optional[int] = None,
                 temps: Optional[Dict[str, float]] = None, rails: Optional[Dict[str, Tuple[int, int]]] = None) -> None:
        self.timestamp = timestamp            # ISO 8601 text when the line had a timestamp prefix
        self.ram_used_mb = ram_used_mb
        self.ram_total_mb = ram_total_mb
        self.swap_used_mb = swap_used_mb
        self.swap_total_mb = swap_total_mb
        self.cpu_load = cpu_load or []        # per core, None for an `off` core
        self.cpu_freq_mhz = cpu_freq_mhz or []
        self.gpu_load = gpu_load              # %, None without root or on TX2's `GR3D_FREQ @0`
        self.gpu_freq_mhz = gpu_freq_mhz      # the highest GPC frequency on Orin
        self.emc_load = emc_load
        self.emc_freq_mhz = emc_freq_mhz
        self.temps = temps or {}              # sensor name → °C
        self.rails = rails or {}              # rail name → (current mW, average mW)

    def to_dict(self) -> Dict[str, Any]:
        d = dict(self.__dict__)
        d["rails"] = dict((k, list(v)) for k, v in self.rails.items())
        return d

    def __repr__(self) -> str:
        return "Sample(ram={}/{} MB, gpu={}%, rails={})".format(
            self.ram_used_mb, self.ram_total_mb, self.gpu_load, sorted(self.rails))


def _cpu_cores(text):
    loads, freqs = [], []
    for core in text.split(","):
        m = _CPU_CORE.match(core.strip())
        loads.append(int(m.group(1)) if m else None)
        freqs.append(int(m.group(2)) if m and m.group(2) else None)
    return loads, freqs


def _gr3d(line):
    m = _GR3D.search(line)
    if not m:
        return None, None
    load = int(m.group(1)) if m.group(1) else None
    freqs = [int(f) for f in (m.group(2) or "").split(",") if f]
    return load, (max(freqs) if freqs else None)


def _timestamp(line):
    m = _TIMESTAMP.match(line)
    if not m:
        return None, line
    month, day, year, clock = m.groups()
    return "{}-{}-{}T{}".format(year, month, day, clock), line[m.end():]


def parse_line(line: str) -> Optional[Sample]:
    """A Sample, or None when the line is not a tegrastats line."""
    stamp, body = _timestamp(line)
    ram, cpu = _RAM.search(body), _CPU.search(body)
    if not ram or not cpu:
        return None
    loads, freqs = _cpu_cores(cpu.group(1))
    swap, emc = _SWAP.search(body), _EMC.search(body)
    gpu_load, gpu_freq = _gr3d(body)
    temps = dict((name, float(c)) for name, c in _TEMP.findall(body) if float(c) != _NO_READING_C)
    rails = dict((name, (int(cur), int(avg))) for name, cur, avg in _RAIL.findall(body))
    return Sample(
        timestamp=stamp, ram_used_mb=int(ram.group(1)), ram_total_mb=int(ram.group(2)),
        swap_used_mb=int(swap.group(1)) if swap else None, swap_total_mb=int(swap.group(2)) if swap else None,
        cpu_load=loads, cpu_freq_mhz=freqs, gpu_load=gpu_load, gpu_freq_mhz=gpu_freq,
        emc_load=int(emc.group(1)) if emc else None,
        emc_freq_mhz=int(emc.group(2)) if emc and emc.group(2) else None, temps=temps, rails=rails)


def parse_lines(lines: Iterable[str]) -> Tuple[List[Sample], int]:
    """(samples, skipped): every tegrastats line parsed, every other non-blank line counted."""
    samples, skipped = [], 0
    for line in lines:
        if not line.strip():
            continue
        s = parse_line(line)
        if s is None:
            skipped += 1
        else:
            samples.append(s)
    return samples, skipped


def parse_file(path: Union[str, os.PathLike]) -> Tuple[List[Sample], int]:
    with open(str(path), errors="replace") as f:
        return parse_lines(f)


def total_power_mw(sample: Sample) -> Tuple[Optional[int], Tuple[str, ...]]:
    """(mW, rails used) for the whole module: the input rail where the board has one, else the sum of all rails."""
    for rail in INPUT_RAILS:
        if rail in sample.rails:
            return sample.rails[rail][0], (rail,)
    if not sample.rails:
        return None, ()
    names = tuple(sorted(sample.rails))
    return sum(sample.rails[n][0] for n in names), names


def _mean(xs):
    return sum(xs) / len(xs) if xs else None


def summarize(samples: Sequence[Sample], skipped: int = 0) -> Dict[str, Any]:
    """Means and maxima over a window of samples; power is the mean of the *current* readings (tegrastats' own
    running average starts when tegrastats started, not when the window did)."""
    rails = {}
    for s in samples:
        for name, (cur, _avg) in s.rails.items():
            rails.setdefault(name, []).append(cur)
    totals = [total_power_mw(s) for s in samples]
    total_rails = sorted({r for _mw, used in totals for r in used})
    temps = {}
    for s in samples:
        for name, c in s.temps.items():
            temps[name] = max(c, temps.get(name, c))
    gpu = [s.gpu_load for s in samples if s.gpu_load is not None]
    emc = [s.emc_load for s in samples if s.emc_load is not None]
    return {
        "samples": len(samples),
        "skipped_lines": skipped,
        "power_mw": dict((name, _mean(v)) for name, v in sorted(rails.items())),
        "total_power_mw": _mean([mw for mw, _used in totals if mw is not None]),
        "total_power_rails": total_rails,
        "total_power_method": _total_method(total_rails),
        "gpu_load_mean_pct": _mean(gpu),
        "gpu_load_max_pct": max(gpu) if gpu else None,
        "emc_load_mean_pct": _mean(emc),
        "max_temp_c": temps,
        "ram_used_max_mb": max([s.ram_used_mb for s in samples]) if samples else None,
    }


def _total_method(rails):
    if not rails:
        return None
    if len(rails) == 1 and rails[0] in INPUT_RAILS:
        return "input rail"
    return "sum of rails (the board prints no input rail)"


class Sampler(object):
    """Run `tegrastats --interval N` in a subprocess for the duration of a `with` block.

    A missing binary makes the sampler unavailable (`available` False, `reason` says why); it never raises.
    Each sample is stored with its arrival time (`time.monotonic()`) so that `summary(start, end)` can cover the
    timed runs only, not an engine load or warm-up before them.
    """

    def __init__(self, path: str = "tegrastats", interval_ms: int = 200) -> None:
        self.path = path
        self.interval_ms = int(interval_ms)
        self.available = False
        self.reason = None
        self.skipped = 0
        self.last_unparsed = None
        self._timed = []  # (monotonic seconds, Sample)
        self._lock = threading.Lock()
        self._proc = None
        self._thread = None

    def start(self) -> "Sampler":
        exe = shutil.which(self.path)
        if exe is None:
            self.reason = "tegrastats not found ({}): no power or GPU-load figures".format(self.path)
            return self
        cmd = [exe, "--interval", str(self.interval_ms)]
        if shutil.which("stdbuf"):  # tegrastats writes through stdio: ask for line buffering into our pipe
            cmd = ["stdbuf", "-oL"] + cmd
        try:
            self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          universal_newlines=True, bufsize=1)
        except OSError as e:
            self.reason = "cannot start {}: {}".format(exe, e)
            return self
        self.available = True
        self._thread = threading.Thread(target=self._read, name="tegrastats-reader")
        self._thread.daemon = True
        self._thread.start()
        return self

    def _read(self):
        for line in iter(self._proc.stdout.readline, ""):
            if not line.endswith("\n"):  # cut short when the process was stopped
                break
            sample = parse_line(line)
            with self._lock:
                if sample is not None:
                    self._timed.append((time.monotonic(), sample))
                elif line.strip():
                    self.skipped += 1
                    self.last_unparsed = line.strip()[:200]

    def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._thread.join(timeout=3)
        self._proc.stdout.close()
        self._proc = None

    def __enter__(self) -> "Sampler":
        return self.start()

    def __exit__(self, *exc: Any) -> bool:
        self.stop()
        return False

    def samples(self, start: Optional[float] = None, end: Optional[float] = None) -> List[Sample]:
        """Samples that arrived within [start, end] (monotonic seconds; None = open end)."""
        with self._lock:
            return [s for t, s in self._timed
                    if (start is None or t >= start) and (end is None or t <= end)]

    def summary(self, start: Optional[float] = None, end: Optional[float] = None) -> Dict[str, Any]:
        """`summarize` over a window, plus whether tegrastats ran and the interval."""
        d = summarize(self.samples(start, end), self.skipped)
        d.update(available=self.available, reason=self.reason, interval_ms=self.interval_ms,
                 last_unparsed_line=self.last_unparsed)
        return d
