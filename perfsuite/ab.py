"""`perfsuite ab`: compare two versions of the code on one machine in one job, by interleaved rounds.

Separate runs drift apart (load, clocks, placement) by more than a point's spread within one run, so a
gate between two runs flags noise or, with a noise floor wide enough to cover the drift, sees nothing.
`perfsuite ab` measures both versions **in the same time window**: for each round and each point it runs
A (baseline) and B (candidate) back to back, in a random order per pair, each in a fresh process of its
own version. Drift then moves both halves of a pair alike and cancels in the ratio B/A.

How it runs:

* a REF is a path to a checkout, or a git ref of the current repository (a detached git worktree is made
  under the output folder and removed afterwards);
* each side gets one server (`perfsuite.ab_server`, started with that checkout on ``PYTHONPATH``) that
  imports torch once and forks a fresh child per round; a ref without that entry point is refused (exit 2);
* rounds are round-major: round 1 of every point, then round 2, ... so a point's rounds are spread over the
  job (more independent); within a round both sides are prepared (forked, built, warmed up) and then
  measure their repetitions in chunks alternated A B B A ... (`measure_rounds`), so the two halves of a
  pair see the same load even when it changes faster than a round lasts;
* each point is judged by `perfsuite.stats.paired_verdict` on a per-round statistic (`ROUND_STATS`: the
  fastest repetition on the CPU, the median on CUDA; exact sign-test interval of the median paired
  ratio); memory, firing rate, agreement and status as `perfsuite compare`
  judges them (`perfsuite.verdicts.compare_point`), so the result is a `perfsuite.compare.Comparison`
  with the same verdicts, warnings and exit codes (0 pass, 1 regression, 2 bad input or internal error).

Output (``--out DIR``): ``DIR/baseline`` and ``DIR/candidate`` are normal run folders (env.json,
results.jsonl with one row per point: the samples of all rounds pooled into the time block, the round
medians and minima under ``ab``), so ``perfsuite report`` works on each; ``DIR/ab.json`` and ``DIR/ab.md`` hold the
verdicts, the refs, the rounds and the measured per-round overhead.
"""
from __future__ import annotations

import contextlib
import json
import os
import queue
import random
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from .ab_output import render, to_json, to_markdown  # noqa: F401 - render: the CLI's table of a result
from .compare import Comparison, json_safe
from .environment import env_differences
from .measure.load import load_flags, run_differences, run_summary
from .results import ENV_FILE, RESULTS_FILE, append_row
from .stats import paired_verdict
from .verdicts import VERDICTS, Finding, Thresholds, compare_point

SIDES = ("baseline", "candidate")
SERVER_MODULE = "perfsuite.ab_server"
#: seconds a server may take to start (Python + torch import on a loaded machine)
SERVER_START_TIMEOUT_S = 300.0


class ABError(ValueError):
    """Bad input for `perfsuite ab` (a ref that is neither a checkout nor a commit, a ref without the entry
    point, a scenario a side cannot load): the CLI prints it and exits 2."""


# ---------------------------------------------------------------------------------------- checkouts
def _git(args: list[str], cwd: str | os.PathLike) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@dataclass
class Checkout:
    ref: str
    path: Path
    commit: str | None
    #: made by us (a git worktree): removed when done
    temporary: bool = False


def resolve_ref(ref: str, repo: Path, trees: Path, side: str) -> Checkout:
    """A path to a checkout is used as it is; otherwise ``ref`` must name a commit of ``repo``, checked out
    as a detached worktree under ``trees``. `ABError` names the ref and what was expected."""
    p = Path(ref)
    if p.is_dir():
        if not (p / "perfsuite" / "__init__.py").is_file():
            raise ABError(f"--{side} {ref}: a folder without perfsuite/__init__.py; expected a perfsuite checkout "
                          f"or a git ref")
        head = _git(["rev-parse", "HEAD"], p)
        return Checkout(ref, p.resolve(), head.stdout.strip() if head.returncode == 0 else None)
    sha = _git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], repo)
    if sha.returncode != 0:
        raise ABError(f"--{side} {ref}: neither a folder nor a commit of the git repository {repo}; expected a "
                      f"path to a checkout or a git ref (branch, tag, SHA)")
    commit = sha.stdout.strip()
    path = trees / f"{side}-{commit[:12]}"
    made = _git(["worktree", "add", "--detach", str(path), commit], repo)
    if made.returncode != 0:
        raise ABError(f"--{side} {ref}: git worktree add failed: {made.stderr.strip()[:300]}")
    return Checkout(ref, path.resolve(), commit, temporary=True)


def remove_checkout(c: Checkout, repo: Path) -> None:
    if c.temporary:
        _git(["worktree", "remove", "--force", str(c.path)], repo)
        shutil.rmtree(c.path, ignore_errors=True)


def check_entry_point(c: Checkout, side: str) -> None:
    if not (c.path / "perfsuite" / "ab_server.py").is_file():
        raise ABError(f"--{side} {c.ref}: this version has no perfsuite/ab_server.py, the entry point `perfsuite "
                      f"ab` runs in each checkout (it predates the ab command); compare it with stored runs "
                      f"(`perfsuite run` in that checkout, then `perfsuite compare`) instead")


# ------------------------------------------------------------------------------------------ servers
class Server:
    """The `perfsuite.ab_server` of one side, and the JSON-lines pipe to it."""

    def __init__(self, side: str, checkout: Checkout, scenario: Path, device: str | None, log: Path,
                 python: str = sys.executable) -> None:
        self.side, self.checkout = side, checkout
        env = {**os.environ, "PYTHONPATH": str(checkout.path)}
        cmd = [python, "-m", SERVER_MODULE, str(scenario)] + (["--device", device] if device else [])
        self._log = open(log, "ab")
        self.proc = subprocess.Popen(cmd, cwd=checkout.path, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._log, text=True, bufsize=1,
                                     start_new_session=True)
        self._lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        hello = self._answer(SERVER_START_TIMEOUT_S, "starting")
        if not hello.get("ready"):
            self.close()
            raise ABError(f"{side} ({checkout.ref}) cannot load the scenario: {hello.get('error')}")
        self.keys: list[str] = hello["keys"]
        self.protocol: int = int(hello.get("protocol") or 1)
        self.devices: list[str] = hello.get("devices") or []

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _answer(self, timeout: float, what: str) -> dict:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"{self.side} server gave no answer within {timeout:g} s while {what}") from None
        if line is None:
            self.proc.wait(10)
            raise RuntimeError(f"{self.side} server ({self.checkout.ref}) exited with code {self.proc.returncode} "
                               f"while {what}; its log: {self._log.name}")
        return json.loads(line)

    def ask(self, request: dict, timeout: float, what: str) -> dict:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        ans = self._answer(timeout, what)
        if "error" in ans:
            raise RuntimeError(f"{self.side} server: {ans['error']}")
        return ans

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.stdin.write(json.dumps({"cmd": "stop"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(10)
        except (OSError, subprocess.TimeoutExpired, ValueError):
            pass
        if self.proc.poll() is None:
            # the server leads its own process group: a round's child still measuring goes with it
            with contextlib.suppress(OSError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._log.close()


def start_server(side: str, checkout: Checkout, scenario: Path, device: str | None, log: Path) -> Server:
    """Start one side's server; a ref older than the entry point is refused before anything starts."""
    check_entry_point(checkout, side)
    return Server(side, checkout, scenario, device, log)


# ------------------------------------------------------------------------------------------- rounds
@dataclass
class Rounds:
    """Everything measured for one side: rows per key in round order, and each round's overhead (seconds
    between sending the request and the answer, minus the time the measurement itself took)."""

    rows: dict[str, list[dict]] = field(default_factory=dict)
    overhead_s: list[float] = field(default_factory=list)


#: the per-round statistic of the paired ratio by device (`round_value`): on a shared CPU a repetition is its
#: own time plus the slices other processes took in between, so a round's fastest repetition is the least
#: disturbed and steadier between rounds than its median (docs/regression.md, gate power); CUDA: the median
ROUND_STATS = {"cpu": "min", "cuda": "median"}


def round_value(row: dict, stat: str) -> float | None:
    """The round's ``stat`` ("median" or "min") of its time samples; None for a round that failed."""
    t = row.get("time") if row.get("status") == "ok" and isinstance(row.get("time"), dict) else {}
    if stat == "min":
        xs = [x for x in (t.get("samples_ms") or []) if isinstance(x, (int, float))]
        return float(min(xs)) if xs else None
    return float(t["median_ms"]) if isinstance(t.get("median_ms"), (int, float)) else None


def interleave(keys: list[str], rounds: int, rng: random.Random) -> list[tuple[str, int, tuple[str, str]]]:
    """The schedule: (key, round, side order) round-major, each pair's order drawn at random."""
    plan = []
    for r in range(rounds):
        for key in keys:
            plan.append((key, r, tuple(rng.sample(SIDES, 2))))
    return plan


#: chunks of each side's measured repetitions per round, alternated A B B A ... (`measure_rounds`)
DEFAULT_CHUNKS = 6
#: chunks per round by device (`run_ab`'s default): on CUDA whole rounds, so that the two sides never hold
#: GPU memory at the same time (a point sized for the device would not fit twice)
ROUND_CHUNKS = {"cpu": DEFAULT_CHUNKS, "cuda": 1}


def measure_rounds(servers: dict[str, Any], keys: list[str], rounds: int, run_ids: dict[str, str],
                   ctx: dict[str, dict], timeouts: dict[str, float], *, seed: int = 0, chunks: int = DEFAULT_CHUNKS,
                   progress: Callable[[str], None] | None = None,
                   out: dict[str, Rounds] | None = None) -> dict[str, Rounds]:
    """Run the schedule on the servers (anything with ``ask(request, timeout, what)`` answering as
    `perfsuite.ab_server` does). Rows are added to ``out`` as they come (pass it to keep them when the
    schedule is interrupted).

    When both servers speak protocol 2 and ``chunks`` > 1, a round prepares both sides (build, warm-up)
    and then alternates ``chunks`` chunks of their measured repetitions in the order A B B A A B ... (the
    pair's random order first): A and B are measured interleaved within the same fraction of a second, so
    load that changes faster than a whole round still moves both alike. Otherwise (a server of protocol 1)
    each side's round runs whole, one after the other."""
    out = out if out is not None else {s: Rounds() for s in SIDES}
    chunked = chunks > 1 and all(getattr(servers[s], "protocol", 1) >= 2 for s in SIDES)
    for i, (key, r, order) in enumerate(interleave(keys, rounds, random.Random(seed))):
        requests = {side: {"key": key, "run_id": run_ids[side], "ctx": ctx[side]} for side in SIDES}
        answers, wall, started = _one_round(servers, order, requests, timeouts[key] + 60.0,
                                            f"measuring {key} round {r + 1}", chunks if chunked else 1)
        for side in order:
            ans = answers[side]
            row = ans["row"]
            row.setdefault("ab_order", "".join("AB"[SIDES.index(s)] for s in order))
            row.setdefault("ab_started", started[side])
            out[side].rows.setdefault(key, []).append(row)
            measured = (row.get("duration_s") or 0.0) if row.get("status") == "ok" else ans.get("child_s", 0.0)
            # a chunked round's duration_s leaves out its pauses (`perfsuite.ab_server`), so this is the time
            # of the side's own requests beyond its own measurement either way
            out[side].overhead_s.append(max(wall[side] - measured, 0.0))
        if progress:
            progress(f"round {r + 1}/{rounds}: {key.split('#')[0]} ({i + 1}/{len(keys) * rounds})")
    return out


def _one_round(servers: dict[str, Any], order: tuple[str, str], requests: dict[str, dict], timeout: float,
               what: str, chunks: int) -> tuple[dict[str, dict], dict[str, float], dict[str, float]]:
    """One round of one point: (answers with each side's row, seconds each side's requests took, the time
    each side's round began). ``chunks`` > 1: prepare both, then alternate their chunks X Y Y X ..."""
    wall = {s: 0.0 for s in SIDES}
    started: dict[str, float] = {}

    def ask(side: str, request: dict) -> dict:
        started.setdefault(side, time.time())
        t0 = time.perf_counter()
        ans = servers[side].ask(request, timeout, what)
        wall[side] += time.perf_counter() - t0
        return ans

    answers: dict[str, dict] = {}
    if chunks == 1:
        for side in order:
            answers[side] = ask(side, {"cmd": "round", **requests[side]})
        return answers, wall, started
    for side in order:
        ans = ask(side, {"cmd": "prepare", **requests[side], "chunks": chunks})
        if "row" in ans:  # the point ended before measuring (an error, a skip)
            answers[side] = ans
    c = 0
    while len(answers) < len(SIDES):
        for side in (order if c % 2 == 0 else order[::-1]):
            if side not in answers:
                ans = ask(side, {"cmd": "go"})
                if "row" in ans:
                    answers[side] = ans
        c += 1
        if c > chunks + 1:  # the point measured more chunks than asked: a server of another design
            raise RuntimeError(f"{what}: a round did not end after {chunks} chunks")
    return answers, wall, started


def side_row(rows: list[dict], side: str, ref: str) -> dict:
    """One row per point for the side's run folder: the first failed round's row when any round failed
    (its status is what the point did), else the last round's row with the samples of every round pooled
    into its time block, and ``ab``: the per-round medians."""
    from .measure.timing import summarize

    bad = [r for r in rows if r.get("status") != "ok"]
    row = dict(bad[0] if bad else rows[-1])
    medians = [round_value(r, "median") for r in rows]
    mins = [round_value(r, "min") for r in rows]
    samples = [s for r in rows for s in ((r.get("time") or {}).get("samples_ms") or [])]
    if not bad and samples and isinstance(row.get("time"), dict):
        row["time"] = {**row["time"], **summarize(samples)}
    finite = [m for m in medians if m is not None]
    row["ab"] = {"side": side, "ref": ref, "rounds": len(rows), "round_medians_ms": medians,
                 "round_mins_ms": mins, "round_sizes": [len((r.get("time") or {}).get("samples_ms") or [])
                                                         for r in rows],
                 "round_started": [r.get("ab_started") for r in rows],
                 "median_of_rounds_ms": statistics.median(finite) if finite else None,
                 "rounds_under_load": sum(bool(load_flags(r.get("load"))) for r in rows)}
    row.pop("ab_order", None)
    row.pop("ab_started", None)
    return row


def judge(measured: dict[str, Rounds], keys_a: list[str], keys_b: list[str], th: Thresholds,
          stat: str = "median") -> list[Finding]:
    """Findings for every key of either side: paired time verdicts, other metrics as compare judges them."""
    findings: list[Finding] = []
    for key in sorted(set(keys_a) | set(keys_b)):
        if key not in keys_b:
            findings.append(Finding(key, "point", "missing", None, None, detail="not in the candidate's scenario"))
            continue
        if key not in keys_a:
            findings.append(Finding(key, "point", "new", None, None, detail="not in the baseline's scenario"))
            continue
        ra, rb = measured["baseline"].rows[key], measured["candidate"].rows[key]
        a, b = side_row(ra, "baseline", ""), side_row(rb, "candidate", "")
        point = compare_point(key, a, b, th)
        if a.get("status") == "ok" and b.get("status") == "ok":
            point = [f for f in point if f.metric != "time"] + [_paired_finding(key, ra, rb, th, stat)]
        findings.extend(point)
    order = {v: i for i, v in enumerate(VERDICTS)}
    return sorted(findings, key=lambda f: (order[f.verdict], f.key, f.metric))


def _paired_finding(key: str, ra: list[dict], rb: list[dict], th: Thresholds, stat: str) -> Finding:
    ma, mb = [round_value(r, stat) for r in ra], [round_value(r, stat) for r in rb]
    nan = float("nan")
    verdict, ratio, ev = paired_verdict([nan if m is None else m for m in ma], [nan if m is None else m for m in mb],
                                        threshold=th.time, confidence=th.confidence)
    ev["round_stat"] = stat
    loaded = {s: n for s, rows in (("baseline", ra), ("candidate", rb))
              if (n := sum(bool(load_flags(r.get("load"))) for r in rows))}
    if loaded:
        ev["load"] = {s: [f"{n} of {len(ra)} rounds under load"] for s, n in loaded.items()}
    fa, fb = [m for m in ma if m is not None], [m for m in mb if m is not None]
    if ratio is None:
        detail = ev.get("reason") or ev.get("untestable", "")
    else:
        ci = "" if ev["ci"] is None else " [{:.3f}, {:.3f}]".format(*ev["ci"])
        detail = f"paired x{ratio:.3f}{ci} over {ev['n']} rounds (round {stat}s), threshold {th.time:.1%}"
        if ev.get("detectable") is not None and ev["detectable"] != float("inf"):
            detail += f", detectable >= {ev['detectable']:+.0%}"
        if verdict == "untestable":
            detail += f" (untestable: {ev['untestable']})"
    if loaded:
        detail += "; under load: " + ", ".join(f"{s} {n}/{len(ra)} rounds" for s, n in loaded.items())
    return Finding(key, "time", verdict, statistics.median(fa) if fa else None, statistics.median(fb) if fb else None,
                   ratio, ev, detail, "ms")


# ------------------------------------------------------------------------------------------ the job
@dataclass
class ABResult:
    comparison: Comparison
    out_dir: Path
    refs: dict[str, dict]
    rounds: int
    overhead_s: dict[str, float | None]
    wall_s: float
    chunks: int = 1
    round_stat: str = "median"

    @property
    def exit_code(self) -> int:
        return self.comparison.exit_code

    def to_dict(self) -> dict:
        return {"kind": "perfsuite-ab", "refs": self.refs, "rounds": self.rounds, "chunks": self.chunks,
                "round_stat": self.round_stat, "round_overhead_s": self.overhead_s, "wall_s": self.wall_s,
                "design": "interleaved rounds, random order per pair, a fresh process per round, each round's "
                          "repetitions in chunks alternated A B B A ...; exact sign-test interval of the median "
                          f"paired ratio B/A of the rounds' {self.round_stat}s",
                **self.comparison.to_dict()}


def _write_side(out: Path, env: dict, rows: list[dict]) -> None:
    from .summary import write_summary

    out.mkdir(parents=True, exist_ok=True)
    (out / ENV_FILE).write_text(json.dumps(json_safe(env), indent=2, default=str, allow_nan=False) + "\n",
                                encoding="utf-8")
    results = out / RESULTS_FILE
    if results.exists():
        results.unlink()
    for r in rows:
        append_row(results, r)
    write_summary(out, rows)


def run_ab(scenario: str | os.PathLike, baseline: str, candidate: str, out_dir: str | os.PathLike, *,
           rounds: int = 10, thresholds: Thresholds | None = None, device: str | None = None, seed: int = 0,
           roofline: bool = False, allow_missing: bool = False, repo: str | os.PathLike | None = None,
           chunks: int | None = None, progress: Callable[[str], None] | None = None) -> ABResult:
    """Measure ``scenario`` with the ``baseline`` and ``candidate`` refs interleaved for ``rounds`` rounds
    into ``out_dir`` and judge every point (``chunks``: per side and round, None: `ROUND_CHUNKS` of the
    device). Bad input raises `ABError`."""
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ABError(f"--rounds {rounds!r} is invalid; expected an int >= 1 (>= 6 to test the time of a point)")
    if chunks is not None and (isinstance(chunks, bool) or not isinstance(chunks, int) or chunks < 1):
        raise ABError(f"--chunks {chunks!r} is invalid; expected an int >= 1 (1: each side's round whole)")
    scenario = Path(scenario).resolve()
    if not scenario.is_file():
        raise ABError(f"scenario {scenario}: not found; expected a scenario YAML file")
    out = Path(out_dir).resolve()
    if (out / "ab.json").exists():
        raise ABError(f"{out} already holds ab.json; choose another --out folder")
    repo_path = Path(repo or os.getcwd()).resolve()
    th = thresholds or Thresholds()
    out.mkdir(parents=True, exist_ok=True)
    trees = out / ".ab-trees"
    t_start = time.perf_counter()
    checkouts: dict[str, Checkout] = {}
    servers: dict[str, Server] = {}
    try:
        for side, ref in zip(SIDES, (baseline, candidate)):
            checkouts[side] = resolve_ref(ref, repo_path, trees, side)
        for side in SIDES:
            check_entry_point(checkouts[side], side)
        for side in SIDES:
            servers[side] = start_server(side, checkouts[side], scenario, device, out / f"{side}.log")
        devices = {d for s in servers.values() for d in s.devices}
        if len(devices) != 1:
            raise ABError(f"the scenario's points run on {sorted(devices)}; expected one device (pass --device)")
        dev = devices.pop()
        chunks = ROUND_CHUNKS.get(dev, 1) if chunks is None else chunks
        envs, run_ids, ctx = {}, {}, {}
        for side in SIDES:
            env = servers[side].ask({"cmd": "env", "device": dev, "roofline": roofline}, 900.0, "recording env")["env"]
            run_ids[side] = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
            env.update(run_id=run_ids[side], ab={"side": side, "ref": checkouts[side].ref,
                                                  "commit": checkouts[side].commit, "rounds": rounds})
            envs[side], ctx[side] = env, {"idle_watts": env.get("idle_watts"), "energy_reason": env.get("energy_reason")}
        keys_a, keys_b = servers["baseline"].keys, servers["candidate"].keys
        common = [k for k in keys_a if k in set(keys_b)]
        timeouts = _timeouts(scenario, dev, common)
        measured: dict[str, Rounds] = {s: Rounds() for s in SIDES}
        try:
            measure_rounds(servers, common, rounds, run_ids, ctx, timeouts, seed=seed, chunks=chunks,
                           progress=progress, out=measured)
        except BaseException:  # Ctrl-C or a server that died: keep every round already measured, then stop
            for side in SIDES:
                done = [k for k in common if measured[side].rows.get(k)]
                _write_side(out / side, envs[side], [side_row(measured[side].rows[k], side, checkouts[side].ref)
                                                     for k in done])
            raise
    finally:
        for s in servers.values():
            s.close()
        for c in checkouts.values():
            remove_checkout(c, repo_path)
        if trees.exists() and not any(trees.iterdir()):
            trees.rmdir()
    for side in SIDES:
        _write_side(out / side, envs[side],
                    [side_row(measured[side].rows[k], side, checkouts[side].ref) for k in common])
    stat = ROUND_STATS.get(dev, "median")
    findings = judge(measured, keys_a, keys_b, th, stat)
    rows_of = {s: [r for k in common for r in measured[s].rows[k]] for s in SIDES}
    comp = Comparison(findings, th, envs["baseline"], envs["candidate"], env_differences(envs["baseline"],
                      envs["candidate"]), allow_missing=allow_missing, baseline_points=len(keys_a),
                      load_differences=run_differences(run_summary(rows_of["baseline"]),
                                                       run_summary(rows_of["candidate"])), paired=True)
    refs = {s: {"ref": checkouts[s].ref, "commit": checkouts[s].commit, "run": str(out / s)} for s in SIDES}
    overhead = {s: (statistics.median(measured[s].overhead_s) if measured[s].overhead_s else None) for s in SIDES}
    chunked = chunks > 1 and all(s.protocol >= 2 for s in servers.values())
    result = ABResult(comp, out, refs, rounds, overhead, time.perf_counter() - t_start, chunks if chunked else 1, stat)
    (out / "ab.json").write_text(to_json(result), encoding="utf-8")
    (out / "ab.md").write_text(to_markdown(result), encoding="utf-8")
    return result


def _timeouts(scenario: Path, device: str, keys: list[str]) -> dict[str, float]:
    """limits.timeout_s per key from this version's reading of the scenario (300 s for a key it lacks)."""
    from .scenario import load_scenario

    try:
        points = {p.key: p for p in load_scenario(scenario).points(device)}
    except Exception:  # this version may not read the refs' scenario keys; the servers enforce their own limit
        points = {}
    return {k: (points[k].limits.timeout_s if k in points else 300.0) for k in keys}
