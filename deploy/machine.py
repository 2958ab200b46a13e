"""How busy this machine is right now: the cores that *other* processes keep busy, from /proc/stat.

Why it matters: torch's and onnxruntime's intra-op threads spin-wait for each other, so a thread that shares its
core with another busy process stalls the whole pool. On a 2-core machine with one core taken elsewhere, a yolov5n
training step took 134 ms with 2 threads when quiet, 476 ms with 2 threads and 279 ms with 1 thread under load.
Choosing threads = free cores, and saying so, is the cure; a timing taken on a loaded machine is flagged.

Linux only (hosts and Jetsons alike); elsewhere the load reads as unknown (None) and nothing is adapted.
Python 3.6, no torch: the board tools use it too.
"""

import os
import time
from typing import Any, Optional


def usable_cores() -> int:
    """Cores this process may use (respects taskset / cgroup affinity where the OS exposes it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _machine_busy_s():
    """Seconds of CPU time all processes have used since boot (user+nice+system+irq+softirq+steal), or None."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(x) for x in fields[1:]]
    busy = sum(ticks[:8]) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)  # minus idle and iowait
    return busy / float(os.sysconf("SC_CLK_TCK"))


def _own_cpu_s():
    """CPU seconds of this process and its finished children (the children a meter's caller waited for)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class LoadMeter(object):
    """Cores other processes kept busy while a block ran: `with LoadMeter() as m: ...; m.others`.

    Busy CPU time of the whole machine minus this process's own (and its reaped children's), over the wall time.
    `others` is None where /proc/stat is missing. Usable without `with` through start() / stop().
    """

    def __init__(self) -> None:
        self.others = None
        self.seconds = 0.0
        self._start = None

    def start(self) -> "LoadMeter":
        self._start = (time.monotonic(), _machine_busy_s(), _own_cpu_s())
        return self

    def stop(self) -> Optional[float]:
        t0, busy0, own0 = self._start
        busy1 = _machine_busy_s()
        self.seconds = time.monotonic() - t0
        if busy0 is None or busy1 is None or self.seconds <= 0:
            self.others = None
        else:
            others = (busy1 - busy0) - (_own_cpu_s() - own0)
            self.others = round(max(0.0, others / self.seconds), 2)
        return self.others

    def __enter__(self) -> "LoadMeter":
        return self.start()

    def __exit__(self, *exc: Any) -> bool:
        self.stop()
        return False


def busy_elsewhere(window_s: float = 0.3) -> Optional[float]:
    """Cores used by other processes over a short sample now (None where the OS does not say)."""
    with LoadMeter() as m:
        time.sleep(window_s)
    return m.others


def free_cores(others: Optional[float] = None, cores: Optional[int] = None) -> int:
    """Usable cores minus those other processes keep busy (rounded), at least 1."""
    cores = cores or usable_cores()
    if others is None:
        return cores
    return max(1, min(cores, int(round(cores - others))))


def is_loaded(others: Optional[float], threads: int, cores: Optional[int] = None) -> bool:
    """True when our `threads` plus the other processes' load do not fit on the cores: timings will be slow."""
    cores = cores or usable_cores()
    return others is not None and others > 0.25 and threads + others > cores + 0.25


def load_note(others: Optional[float], cores: Optional[int] = None) -> str:
    """'2 cores, 0.9 busy elsewhere' (for the lines that state threads and timings)."""
    cores = cores or usable_cores()
    if others is None:
        return "{} cores, load unknown".format(cores)
    return "{} cores, {:.1f} busy elsewhere".format(cores, others)
