"""torch's intra-op threads chosen for the machine as it is, and a word when other processes load it.

`TorchThreads(requested=0)` takes the cores that are free now (deploy.machine: usable cores minus what other
processes keep busy), and re-checks after each unit of work (a training epoch): when another process starts or
stops, the thread count follows. A requested count is kept as asked, with a warning when it does not fit.
Every change is said in one line, e.g. `torch threads: 1 (2 cores, 1.0 busy elsewhere)`.
"""

from __future__ import annotations

from typing import Callable

import torch

from deploy.machine import busy_elsewhere, free_cores, is_loaded, load_note, usable_cores

__all__ = ["TorchThreads"]


class TorchThreads:
    def __init__(self, requested: int = 0, log: Callable[[str], None] = print) -> None:
        self.requested, self.log, self.cores = int(requested or 0), log, usable_cores()
        self.others = busy_elsewhere()
        self.threads = self.requested or free_cores(self.others, self.cores)
        torch.set_num_threads(self.threads)
        how = "as requested" if self.requested else "free cores"
        self.log(f"torch threads: {self.threads} ({how}; {load_note(self.others, self.cores)})")
        self._warn_if_loaded("training")

    def update(self, others: float | None, what: str = "training") -> int:
        """After a unit of work during which other processes used `others` cores: adapt (when not requested)."""
        self.others = others
        if not self.requested and others is not None:
            threads = free_cores(others, self.cores)
            if threads != self.threads:
                self.threads = threads
                torch.set_num_threads(threads)
                self.log(f"torch threads: {threads} (the load changed: {load_note(others, self.cores)})")
        self._warn_if_loaded(what)
        return self.threads

    def _warn_if_loaded(self, what: str) -> None:
        if is_loaded(self.others, self.threads, self.cores):
            hint = "--threads 0 lets edgeprune choose" if self.requested else "stop them, or expect delays"
            self.log(f"warning: other processes keep {self.others:.1f} of {self.cores} cores busy while {what} uses "
                     f"{self.threads} thread(s): it will run several times slower ({hint})")
