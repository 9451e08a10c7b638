"""Join the run folders of one sweep (its shards) into one: ``perfsuite merge``.

Imports: `perfsuite.results` (rows on disk), `perfsuite.environment` (which env differences refuse a
merge) and `perfsuite.summary`; never the runner or compare.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from .environment import merge_env_differences
from .results import ENV_FILE, RESULTS_FILE, RunResult, append_row, load_run, lock_run_dir
from .summary import write_summary


def _row_text(row: dict) -> str:
    """A row as canonical JSON: rows are compared as text (a NaN never equals itself as a float)."""
    return json.dumps(row, sort_keys=True, default=str)

def _merge_rule(n_ok: int, n: int) -> str:
    if n_ok == 0 or n_ok == n:
        return "the last part's"
    return "the ok row" if n_ok == 1 else "the last part's ok row"


def merge_runs(out_dir: str | os.PathLike, parts: Sequence[str | os.PathLike], *, force: bool = False) -> RunResult:
    """Join shard folders into ``out_dir``.

    Refused (ValueError) unless ``force``: parts whose env.json differ in the fields the regression
    gate compares or in the commit (`merge_env_differences`), and a key held by several parts with
    different rows. A key held by several parts with identical rows (a part given twice) keeps one.
    With ``force``, a differing key keeps an ``ok`` row over one that is not ok, else the last part's;
    env.json then lists the differences and, per such key, the parts and the winner under
    ``merge_forced``. env.json is the first part's, with ``merged_from``: each part's path, run id,
    host, GPU, commit and whole env.json."""
    if not parts:
        raise ValueError("merge: no parts given; expected one or more run folders")
    out = Path(out_dir)
    # a run or another merge writing the same folder is refused; a refused merge creates no folder
    lock = lock_run_dir(out) if out.is_dir() else None
    try:
        return _merge(out, parts, force, lock)
    finally:
        if lock is not None:
            lock.close()


def _holds_results(out: Path) -> bool:
    return (out / RESULTS_FILE).exists() and (out / RESULTS_FILE).stat().st_size > 0


def _merge(out: Path, parts: Sequence[str | os.PathLike], force: bool, lock) -> RunResult:
    if _holds_results(out):
        raise ValueError(f"{out} already holds results; merge into a new folder")
    envs: list[tuple[str, dict]] = []
    holders: dict[str, list[tuple[str, dict]]] = {}  # key -> [(part, row)] in part order
    for part in parts:
        env, rows = load_run(part)  # FileNotFoundError names the part
        envs.append((str(part), env))
        for r in rows:
            holders.setdefault(r["key"], []).append((str(part), r))
    env_diffs = merge_env_differences(envs)
    conflicts = {k: h for k, h in holders.items() if len({_row_text(r) for _, r in h}) > 1}
    if (env_diffs or conflicts) and not force:
        msg = []
        if env_diffs:
            msg.append("the parts come from different environments (" + "; ".join(env_diffs) + ")")
        if conflicts:
            shown = [f"{k} in {', '.join(p for p, _ in h)}" for k, h in list(conflicts.items())[:5]]
            more = f" and {len(conflicts) - 5} more" if len(conflicts) > 5 else ""
            msg.append(f"{len(conflicts)} key(s) hold different rows in several parts ({'; '.join(shown)}{more})")
        raise ValueError("merge refused: " + "; ".join(msg) + ". Expected shards of one run (same machine, "
                         "software and commit, disjoint keys); pass --force to merge anyway (an ok row wins a "
                         "duplicate key, else the last part's; env.json records what was overridden)")
    by_key: dict[str, dict] = {}
    duplicates = []
    for key, h in holders.items():
        ok = [(p, r) for p, r in h if r["status"] == "ok"]
        winner, row = (ok or h)[-1]
        by_key[key] = row
        if key in conflicts:
            duplicates.append({"key": key, "parts": [p for p, _ in h], "statuses": [r["status"] for _, r in h],
                               "winner": winner, "rule": _merge_rule(len(ok), len(h))})
    if lock is None:
        out.mkdir(parents=True, exist_ok=True)
        lock = lock_run_dir(out)
        try:
            return _write_merged(out, envs, by_key, env_diffs, duplicates)
        finally:
            lock.close()
    return _write_merged(out, envs, by_key, env_diffs, duplicates)


def _write_merged(out: Path, envs: list[tuple[str, dict]], by_key: dict[str, dict], env_diffs: list[str],
                  duplicates: list[dict]) -> RunResult:
    if _holds_results(out):  # a run that started here while the parts were read
        raise ValueError(f"{out} already holds results; merge into a new folder")
    env = dict(envs[0][1])
    env["merged_from"] = [{"path": p, "run_id": e.get("run_id"), "hostname": e.get("hostname"),
                           "gpu": (e.get("gpu") or {}).get("name"), "commit": e.get("commit"), "env": e}
                          for p, e in envs]
    if env_diffs or duplicates:
        env["merge_forced"] = {"env_differences": env_diffs, "duplicates": duplicates}
    else:
        env.pop("merge_forced", None)
    (out / ENV_FILE).write_text(json.dumps(env, indent=2, default=str) + "\n", encoding="utf-8")
    for r in by_key.values():
        append_row(out / RESULTS_FILE, r)
    rows = list(by_key.values())
    write_summary(out, rows)
    return RunResult(out, rows=rows, new_rows=len(rows))
