"""Wall time of a synthetic sweep on the local executor and on the Ray executor with 1, 2 and 4 slots.

Every point is the test plugin ``SleepingNeuron`` (it sleeps in each call: CPU-light, so slots on
declared GPUs of a local Ray instance do not compete for the cores). Each executor first starts (Ray
instance, slots, workers: ``start s``), then runs the same points (``sweep s``). A row's
``duration_s`` is the point's own time in its worker, so

* speed-up = local sweep s / Ray sweep s; ideal = slots (the points are equal and their number is a
  multiple of the slots); efficiency = speed-up / slots;
* overhead per point = (slots · sweep s − Σ point durations) / points: the time a slot is busy with a
  point outside the point's own measurement (planning, hand-over, rows coming back).

Usage: ``python scripts/bench_executor.py [--points 8] [--sleep 0.1] [--slots 1,2,4] [--json FILE]``.
Prints a Markdown table. Needs ray (``pip install 'perfsuite[ray]'``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _points(n: int, sleep_s: float):
    from perfsuite.scenario import scenario_from_dict

    sc = scenario_from_dict({
        "name": "bench_executor", "device": "cpu",
        "neurons": [{"plugin": "tests.plugins.bad_neurons:SleepingNeuron", "params": {"sleep_s": sleep_s}}],
        "backends": ["eager"], "seq_lens": [16], "batch": list(range(1, n + 1)), "features": [4],
        "modes": ["forward"], "metrics": ["time"],
        "timing": {"warmup_ms": 1, "rep_ms": 1, "min_reps": 3, "max_reps": 3, "cold_start": False},
        "limits": {"timeout_s": 600},
    })
    return sc.points()


def measure(executor, points, out_dir: Path) -> dict:
    """Start ``executor`` (env), run ``points`` on it; times and the rows' own durations."""
    from perfsuite.executors import RunContext
    from perfsuite.runner import plan_point

    t0 = time.perf_counter()
    env = executor.environment("cpu", False)
    start_s = time.perf_counter() - t0
    plans = [plan_point(p, env.get("memory_bytes")) for p in points]
    ctx = RunContext(run_id="bench", out_dir=out_dir,
                     measure={"idle_watts": None, "energy_reason": "not measured in this benchmark"})
    t1 = time.perf_counter()
    try:
        rows = [row for _, row in executor.run(plans, ctx)]
    finally:
        sweep_s = time.perf_counter() - t1
        executor.close()
    bad = [r for r in rows if r["status"] != "ok"]
    if bad:
        raise SystemExit(f"bench_executor: {len(bad)} point(s) not ok, first: {bad[0]['status']}: {bad[0]['reason']}")
    return {"start_s": start_s, "sweep_s": sweep_s, "points": len(rows),
            "point_s": sum(r["duration_s"] for r in rows)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=8, help="points in the sweep (a multiple of every slot count)")
    ap.add_argument("--sleep", type=float, default=0.1, help="seconds each call of a point sleeps")
    ap.add_argument("--slots", default="1,2,4", help="Ray slot counts (declared GPUs of a local instance)")
    ap.add_argument("--json", type=Path, help="also write the measurements as JSON")
    args = ap.parse_args(argv)
    try:
        slots = [int(s) for s in args.slots.split(",")]
    except ValueError:
        print(f"error: --slots {args.slots!r} is invalid; expected integers separated by commas, e.g. 1,2,4",
              file=sys.stderr)
        return 2
    if args.points < 1 or min(slots) < 1:
        print("error: --points and every --slots value must be >= 1", file=sys.stderr)
        return 2
    # the plugin neuron must import in Ray's workers and in the point workers they spawn
    sys.path.insert(0, str(ROOT))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    from perfsuite.executors import LocalExecutor
    from perfsuite.executors.ray import RayExecutor, RayOptions, ray_installed

    if not ray_installed():
        print("error: the Ray executor benchmark needs ray: pip install 'perfsuite[ray]'", file=sys.stderr)
        return 2
    points = _points(args.points, args.sleep)
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_executor-{os.getpid()}"
    results = [dict(executor="local", slots=1, **measure(LocalExecutor(), points, tmp / "local"))]
    for k in slots:
        ex = RayExecutor(RayOptions(address="local", num_gpus=k))
        results.append(dict(executor="ray", slots=k, **measure(ex, points, tmp / f"ray{k}")))
    base = results[0]["sweep_s"]
    lines = ["| executor | slots | points | start s | sweep s | Σ point s | speed-up vs local | efficiency "
             "(speed-up / slots) | overhead per point s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        r["speedup"] = base / r["sweep_s"]
        r["efficiency"] = r["speedup"] / r["slots"]
        r["overhead_per_point_s"] = (r["slots"] * r["sweep_s"] - r["point_s"]) / r["points"]
        lines.append(f"| {r['executor']} | {r['slots']} | {r['points']} | {r['start_s']:.1f} | {r['sweep_s']:.2f} | "
                     f"{r['point_s']:.2f} | {r['speedup']:.2f} | {r['efficiency']:.2f} | "
                     f"{r['overhead_per_point_s']:.3f} |")
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
