#!/usr/bin/env python
"""The performance goals of issue 5, checked against measured rows: measured value vs goal, met or not.

Every number in the table is computed here from ``results.jsonl`` rows (and each run's measured copy
bandwidth in ``env.json``); nothing is typed in by hand. A goal with no usable row is ``not measured``
with the reason. Rows count when ``status == "ok"``, ``device == "cuda"`` and ``neurons`` equals the
goals' N = 32 768.

    python scripts/goals.py RUN_DIR [RUN_DIR ...] [--markdown FILE] [--json FILE]

Exit 0 when the table was written (goals not met are findings, not failures); 2 on bad input.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: import the checkout's perfsuite
    sys.path.insert(0, str(ROOT))

from perfsuite.results import load_run  # noqa: E402

#: the goals' neuron count (issue 5: "at N = 32 768 neurons on an H100")
GOAL_NEURONS = 32768
#: backends that are contenders (the float64 reference is the oracle, never ranked)
CONTENDERS = ("eager", "compiled", "triton", "spikingjelly")
SOURCE = "issue 5 (Triton backend ... near the hardware floor), Performance"


@dataclass
class Goal:
    """One checked goal: ``verdict`` is ``met``, ``not met`` or ``not measured``."""

    goal: str
    condition: str
    target: str
    measured: str
    verdict: str
    value: float | None = None
    detail: str = ""


def load_rows(run_dirs) -> tuple[list[dict], dict[str, float]]:
    """(ok bench rows at N = GOAL_NEURONS on cuda, copy bandwidth GB/s per run_id) from run folders."""
    rows: list[dict] = []
    copy: dict[str, float] = {}
    for d in run_dirs:
        env, run_rows = load_run(d)
        bw = ((env.get("roofline") or {}).get("copy_gbps"))
        for r in run_rows:
            if bw is not None:
                copy[r.get("run_id", "")] = float(bw)
            if (r.get("kind", "bench") == "bench" and r.get("status") == "ok" and r.get("device") == "cuda"
                    and r.get("neurons") == GOAL_NEURONS and (r.get("time") or {}).get("median_ms")):
                rows.append(r)
    return rows, copy


def _ms(row: dict) -> float:
    return float(row["time"]["median_ms"])


def _where(row: dict) -> str:
    return f"{row['neuron']}/{row['backend']}/{row['mode']}/{row['precision']}/T={row['seq_len']}"


def _pick(rows, neuron, backend=None, mode=None, precision=None, seq_len=None, min_len=None) -> list[dict]:
    out = []
    for r in rows:
        if r["neuron"] != neuron or (backend is not None and r["backend"] != backend):
            continue
        if (mode is not None and r["mode"] != mode) or (precision is not None and r["precision"] != precision):
            continue
        if (seq_len is not None and r["seq_len"] != seq_len) or (min_len is not None and r["seq_len"] < min_len):
            continue
        out.append(r)
    return out


def _precisions(rows) -> list[str]:
    order = {"fp32": 0, "bf16": 1, "fp16": 2}
    return sorted({r["precision"] for r in rows}, key=lambda p: order.get(p, 9))


def bandwidth_goal(rows, copy, neuron, mode, seq_len, fraction, label) -> list[Goal]:
    """Triton's achieved bandwidth (analytic min bytes / median time) as a fraction of the measured copy."""
    cond = f"triton, {mode}, T = {seq_len}, N = {GOAL_NEURONS}"
    goals = []
    cands = _pick(rows, neuron, "triton", mode, seq_len=seq_len)
    for prec in _precisions(cands) or [None]:
        sel = [r for r in cands if prec is None or r["precision"] == prec]
        c = f"{cond}, {prec}" if prec else cond
        usable = [r for r in sel if (r.get("cost") or {}).get("min_bytes") and copy.get(r.get("run_id", ""))]
        if not usable:
            why = "no ok row" if not sel else "no analytic min_bytes or no measured copy bandwidth (env roofline)"
            goals.append(Goal(label, c, f">= {fraction:.0%} of copy bandwidth", why, "not measured"))
            continue
        r = usable[0]
        gbps = r["cost"]["min_bytes"] / (_ms(r) * 1e-3) / 1e9
        frac = gbps / copy[r["run_id"]]
        goals.append(Goal(label, c, f">= {fraction:.0%} of copy bandwidth",
                          f"{frac:.1%} ({gbps:.0f} of {copy[r['run_id']]:.0f} GB/s; {_ms(r):.3f} ms)",
                          "met" if frac >= fraction else "not met", frac))
    return goals


def ratio_goal(rows, label, slow, fast, mode, target, *, seq_len=None, min_len=None) -> list[Goal]:
    """time(slow) / time(fast) >= target at every matching length (the smallest ratio decides).

    ``slow`` and ``fast`` are (neuron, backend); backend None = the fastest contender of that neuron."""
    goals = []
    where = f"T = {seq_len}" if seq_len else f"T >= {min_len}"

    def name(nb):
        return f"{nb[0]} {nb[1] or '(fastest backend)'}"

    cond = f"{name(fast)} vs {name(slow)}, {mode}, {where}, N = {GOAL_NEURONS}"
    both = _pick(rows, fast[0], fast[1], mode, seq_len=seq_len, min_len=min_len) + \
        _pick(rows, slow[0], slow[1], mode, seq_len=seq_len, min_len=min_len)
    for prec in _precisions(both) or [None]:
        c = f"{cond}, {prec}" if prec else cond
        ratios = []
        for T in sorted({r["seq_len"] for r in both}):
            f = _best(_pick(rows, fast[0], fast[1], mode, prec, T))
            s = _best(_pick(rows, slow[0], slow[1], mode, prec, T))
            if f is not None and s is not None:
                ratios.append((_ms(s) / _ms(f), T, f, s))
        if not ratios:
            goals.append(Goal(label, c, f">= {target:g}x", f"no length with ok rows for both {name(fast)} and "
                              f"{name(slow)}", "not measured"))
            continue
        worst = min(ratios, key=lambda x: x[0])
        detail = "; ".join(f"T={T}: {q:.2f}x ({_ms(fr):.3f} vs {_ms(sr):.3f} ms, {fr['backend']} vs {sr['backend']})"
                           for q, T, fr, sr in ratios)
        goals.append(Goal(label, c, f">= {target:g}x", f"{worst[0]:.2f}x (smallest, T = {worst[1]})",
                          "met" if worst[0] >= target else "not met", worst[0], detail))
    return goals


def _best(rows) -> dict | None:
    rows = [r for r in rows if r["backend"] in CONTENDERS]
    return min(rows, key=_ms) if rows else None


def triton_vs_compiled(rows, min_len=1024) -> list[Goal]:
    """Triton at least as fast as compiled for every neuron at T >= min_len (every matched point)."""
    label = "Triton at least as fast as compiled, every neuron"
    pairs = []
    for c in rows:
        if c["backend"] != "compiled" or c["seq_len"] < min_len:
            continue
        t = [r for r in _pick(rows, c["neuron"], "triton", c["mode"], c["precision"], c["seq_len"])
             if r.get("neuron_params") == c.get("neuron_params")]
        if t:
            pairs.append((_ms(c) / _ms(t[0]), c))
    cond = f"compiled / triton time, every neuron and mode with both, T >= {min_len}, N = {GOAL_NEURONS}"
    if not pairs:
        return [Goal(label, cond, ">= 1x", "no point with ok rows for both triton and compiled", "not measured")]
    worst = min(pairs, key=lambda x: x[0])
    detail = "; ".join(f"{_where(c)}: {q:.2f}x" for q, c in sorted(pairs, key=lambda x: _where(x[1])))
    neurons = sorted({c["neuron"] for _, c in pairs})
    return [Goal(label, f"{cond} ({len(pairs)} points: {', '.join(neurons)})", ">= 1x",
                 f"{worst[0]:.2f}x (smallest, {_where(worst[1])})", "met" if worst[0] >= 1 else "not met",
                 worst[0], detail)]


def evaluate(rows: list[dict], copy: dict[str, float]) -> list[Goal]:
    """Every goal of issue 5 that rows can speak to, in the issue's order."""
    return [
        *bandwidth_goal(rows, copy, "lif", "train", 16384, 0.80, "LIF train at >= 80 % of copy bandwidth"),
        *ratio_goal(rows, "LIF train >= 2x SpikingJelly's LIF", ("lif", "spikingjelly"), ("lif", "triton"), "train",
                    2.0, min_len=4096),
        *ratio_goal(rows, "DSN train >= 30x PSN (DSN paper: 25.6x, spec §5.4)", ("psn", None), ("dsn", None), "train",
                    30.0, seq_len=16384),
        *bandwidth_goal(rows, copy, "dsn", "train", 16384, 0.70, "DSN train at >= 70 % of copy bandwidth"),
        *[g for mode in ("forward", "train") for g in ratio_goal(
            rows, "sliding PSN >= 100x SpikingJelly's", ("sliding_psn", "spikingjelly"), ("sliding_psn", "triton"),
            mode, 100.0, min_len=4096)],
        *triton_vs_compiled(rows),
    ]


def to_markdown(goals: list[Goal], run_dirs) -> str:
    lines = [f"Goals of {SOURCE}, computed by scripts/goals.py from the rows of: "
             + ", ".join(f"`{d}`" for d in run_dirs) + f". Rows: status ok, cuda, N = {GOAL_NEURONS}.", "",
             "| goal | condition | target | measured | verdict |", "|---|---|---|---|---|"]
    for g in goals:
        lines.append(f"| {g.goal} | {g.condition} | {g.target} | {g.measured} | **{g.verdict}** |")
    details = [g for g in goals if g.detail]
    if details:
        lines += ["", "Per length:", ""] + [f"- {g.goal} ({g.condition}): {g.detail}" for g in details]
    counts = {v: sum(g.verdict == v for g in goals) for v in ("met", "not met", "not measured")}
    lines += ["", ", ".join(f"{n} {v}" for v, n in counts.items()) + "."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="run folders (results.jsonl + env.json)")
    ap.add_argument("--markdown", type=Path, help="write the Markdown table here (default: print it)")
    ap.add_argument("--json", type=Path, help="also write the goals as JSON here")
    args = ap.parse_args(argv)
    try:
        rows, copy = load_rows(args.runs)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    goals = evaluate(rows, copy)
    md = to_markdown(goals, args.runs)
    if args.markdown:
        args.markdown.write_text(md, encoding="utf-8")
    else:
        sys.stdout.write(md)
    if args.json:
        doc = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(g).items()}
               for g in goals]
        args.json.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
