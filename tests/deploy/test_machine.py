"""deploy.machine: the cores other processes keep busy, measured from /proc/stat against a real busy process."""
import subprocess
import sys
import time

import pytest

from deploy.machine import LoadMeter, busy_elsewhere, free_cores, is_loaded, load_note

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/stat is Linux's")


def _spin(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_a_busy_process_is_counted_and_our_own_work_is_not():
    with LoadMeter() as quiet:
        _spin(0.6)  # our own work: not "elsewhere"
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        loaded = busy_elsewhere(0.6)
    finally:
        busy.kill()
        busy.wait()
    assert quiet.others is not None and loaded is not None
    assert loaded > quiet.others + 0.6, (quiet.others, loaded)  # one more core busy elsewhere


def test_free_cores_and_what_counts_as_loaded():
    assert free_cores(None, cores=4) == 4  # unknown load: nothing adapted
    assert free_cores(0.1, cores=2) == 2 and free_cores(1.0, cores=2) == 1 and free_cores(3.0, cores=2) == 1
    assert not is_loaded(0.1, 2, cores=2) and is_loaded(1.0, 2, cores=2) and not is_loaded(1.0, 1, cores=2)
    assert not is_loaded(None, 2, cores=2)
    assert load_note(0.96, cores=2) == "2 cores, 1.0 busy elsewhere" and "unknown" in load_note(None, cores=2)
