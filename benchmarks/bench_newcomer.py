"""The README's two set-up commands as a newcomer runs them: fresh clone, fresh venv, quiet and under load.

    python benchmarks/bench_newcomer.py [--repo .] [--work /tmp/edgeprune-newcomer]
                                        [--out benchmarks/results/newcomer.json]

For each condition (quiet; with another heavy process: a one-thread torch matmul loop holding one core) it clones
the repository, makes a venv, and times `pip install -c constraints.txt -e . && edgeprune demo`, then
`pip install -c constraints.txt -e ".[dev]" && pytest`, recording exit codes, wall times and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

LOAD = ("import torch\ntorch.set_num_threads(1)\na = torch.rand(512, 512)\n"
        "while True:\n    a = (a @ a).clamp_(-1, 1)\n")


def timed(cmd: str, cwd: Path, log: Path) -> dict:
    t0 = time.perf_counter()
    with log.open("w") as f:
        rc = subprocess.call(["bash", "-c", cmd], cwd=cwd, stdout=f, stderr=subprocess.STDOUT)
    return {"command": cmd, "rc": rc, "seconds": round(time.perf_counter() - t0, 1), "load_avg": os.getloadavg()}


def run(repo: Path, work: Path, loaded: bool) -> dict:
    name = "loaded" if loaded else "quiet"
    root = work / name
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    subprocess.check_call(["git", "clone", "-q", str(repo), str(root / "clone")])
    subprocess.check_call([sys.executable, "-m", "venv", str(root / "venv")])
    act = f"source {root / 'venv' / 'bin' / 'activate'}"
    load = subprocess.Popen([sys.executable, "-c", LOAD]) if loaded else None
    try:
        demo = timed(f"{act} && pip install -q -c constraints.txt -e . && edgeprune demo", root / "clone",
                     root / "demo.log")
        tests = timed(f'{act} && pip install -q -c constraints.txt -e ".[dev]" && pytest', root / "clone",
                      root / "pytest.log")
    finally:
        if load is not None:
            load.kill()
            load.wait()
    return {"condition": name, "demo": demo, "tests": tests,
            "load": "a one-thread torch matmul loop holding one core" if loaded else "none"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", default=".")
    ap.add_argument("--work", default="/tmp/edgeprune-newcomer")
    ap.add_argument("--out", default="benchmarks/results/newcomer.json")
    args = ap.parse_args()
    rows = [run(Path(args.repo).resolve(), Path(args.work), loaded) for loaded in (False, True)]
    Path(args.out).write_text(json.dumps({"cores": os.cpu_count(), "runs": rows}, indent=2) + "\n")
    for r in rows:
        print(f"{r['condition']}: demo {r['demo']['seconds'] / 60:.1f} min (rc {r['demo']['rc']}), tests "
              f"{r['tests']['seconds'] / 60:.1f} min (rc {r['tests']['rc']})")


if __name__ == "__main__":
    main()
