"""Session-wide: torch's threads fit the machine as it is when the tests start (on a 2-core machine another busy
process makes 2 spinning threads several times slower than 1; edgeprune.utils.threads)."""
import torch

from deploy.machine import busy_elsewhere, free_cores


def pytest_configure(config):
    threads = free_cores(busy_elsewhere(0.3))
    torch.set_num_threads(threads)


def pytest_report_header(config):
    return f"torch threads: {torch.get_num_threads()} (the cores free when the tests started)"
