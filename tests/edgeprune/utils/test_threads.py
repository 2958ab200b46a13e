"""TorchThreads: torch's threads follow the free cores, and say so; a requested count is kept, with a warning."""
import subprocess
import sys
import time

import pytest
import torch

from deploy.machine import usable_cores
from edgeprune.utils.threads import TorchThreads


@pytest.fixture(autouse=True)
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.skipif(usable_cores() < 2, reason="needs 2 cores to take one away")
def test_threads_leave_out_a_core_another_process_holds():
    lines = []
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        threads = TorchThreads(log=lines.append)
    finally:
        busy.kill()
        busy.wait()
    assert threads.threads <= usable_cores() - 1 and torch.get_num_threads() == threads.threads
    assert lines[0].startswith(f"torch threads: {threads.threads} (free cores; ") and "busy elsewhere" in lines[0]


def test_threads_follow_the_load_as_it_changes():
    lines = []
    threads = TorchThreads(log=lines.append)
    threads.cores = 4  # as on a 4-core machine
    assert threads.update(1.0) == 3 and torch.get_num_threads() == 3
    assert threads.update(3.6) == 1 and threads.update(0.0) == 4 and torch.get_num_threads() == 4
    assert sum("the load changed" in line for line in lines) >= 2


def test_a_requested_count_is_kept_and_a_loaded_machine_is_flagged():
    lines = []
    threads = TorchThreads(requested=2, log=lines.append)
    assert threads.update(threads.cores) == 2 and torch.get_num_threads() == 2
    assert "as requested" in lines[0]
    assert any(line.startswith("warning: other processes keep") and "--threads 0" in line for line in lines)
