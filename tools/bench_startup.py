"""Startup time of the ``biofeedback`` command: the code before the cli redesign (issue 12) beside the working tree.

Run: .venv/bin/python tools/bench_startup.py [--runs 7] [--old d3d4db6]

The old code is ``git archive`` of ``src/`` and ``devices/`` at ``--old`` in a temporary folder (removed at the
end); both variants run with this python and ``PYTHONPATH`` set to their ``src/``, as
``python -c "from biofeedback.cli import main; ..." ARGS``. One untimed run of each first (byte-code and numba
caches of the unpacked tree), then ``--runs`` timed runs each, alternating, so that both see the same machine
load. Wall time of the whole process (``time.perf_counter`` around ``subprocess.run``). Target: current/old < 0.25.
"""

from __future__ import annotations

import argparse
import io
import os
import pathlib
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
COMMANDS = (["--version"], ["devices"])
MAIN = "import sys; from biofeedback.cli import main; sys.exit(main(sys.argv[1:]))"
TARGET_RATIO = 0.25


def unpack(commit: str, into: pathlib.Path) -> pathlib.Path:
    """``src/`` and ``devices/`` of ``commit`` under ``into``; returns its ``src/``."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "src", "devices"], check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def wall_s(src: pathlib.Path, args: list[str]) -> float:
    """Seconds from start to exit of ``biofeedback ARGS`` run from ``src``."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    env.pop("BIOFEEDBACK_DEVICES", None)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", MAIN, *args], env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per variant and command")
    parser.add_argument("--old", default="d3d4db6", help="git commit of the code before the redesign")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        variants = {f"old ({args.old})": unpack(args.old, pathlib.Path(tmp)), "current (working tree)": REPO / "src"}
        print(f"python {sys.version.split()[0]}, {args.runs} alternating runs per variant, wall time of the process")
        for command in COMMANDS:
            for src in variants.values():
                wall_s(src, command)
            times: dict[str, list[float]] = {name: [] for name in variants}
            for _ in range(args.runs):
                for name, src in variants.items():
                    times[name].append(wall_s(src, command))
            print(f"\nbiofeedback {' '.join(command)}")
            for name, ts in times.items():
                print(f"  {name:<24} median {statistics.median(ts):6.3f} s  min {min(ts):6.3f} s")
            old, current = (statistics.median(ts) for ts in times.values())
            print(f"  current/old {current / old:.3f} (target < {TARGET_RATIO})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
