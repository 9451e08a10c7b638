"""Start-up cost of the CLI against torch's own import, measured side by side (#14 item 2).

    python scripts/bench_startup.py [--repeats 7]

Runs, in rounds, ``python -c "import torch"``, ``python -m perfsuite list neurons`` and ``python -m perfsuite
validate scenarios/smoke.yaml`` from this checkout, interleaved (one of each per round, so a load change
on the machine hits all three alike), and prints a Markdown table: median and min-max wall time of each,
and its ratio to ``import torch`` (goal: <= 1.5). Exit 1 when a command fails. The ratio, not the
seconds, is the figure to compare between machines; on a shared machine say so next to the table.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL = 1.5
COMMANDS = {
    "python -c 'import torch'": ["-c", "import torch"],
    "perfsuite list neurons": ["-m", "perfsuite", "list", "neurons"],
    "perfsuite validate scenarios/smoke.yaml": ["-m", "perfsuite", "validate", "scenarios/smoke.yaml"],
}


def time_once(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    r = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {r.returncode}: {r.stderr.strip()[-500:]}")
    return wall


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7, help="rounds (each runs every command once; default 7)")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error(f"--repeats {args.repeats}: expected an int >= 1")
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    try:
        for cmd in COMMANDS.values():  # one unmeasured round: file-system caches
            time_once(cmd, env)
        for r in range(args.repeats):
            order = list(COMMANDS) if r % 2 == 0 else list(reversed(COMMANDS))  # no command always first
            for name in order:
                times[name].append(time_once(COMMANDS[name], env))
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    base = statistics.median(times["python -c 'import torch'"])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{args.repeats} interleaved rounds, {os.cpu_count()} CPUs, load average {load:.1f} at the end, "
          f"Python {sys.version.split()[0]}\n")
    print("| command | median s | min-max s | ratio to import torch |")
    print("|---|---:|---:|---:|")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"| `{name}` | {med:.2f} | {min(ts):.2f}-{max(ts):.2f} | {med / base:.2f} |")
    worst = max(statistics.median(ts) for ts in times.values()) / base
    print(f"\nworst ratio {worst:.2f} (goal <= {GOAL})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
