"""Roofline: achieved bandwidth and FLOP/s of each ok timed point from its analytic cost, and the fraction
of the run's measured roofline (env.json ``roofline``). A roofline marked ``"reliable": false`` (its
repeats disagreed by more than 20 %) never makes a point memory- or compute-bound; one without the key
(an older run) is used as before.

May import: .frames.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from .frames import SETTING, TIME, bench_ok

#: why no point is called memory- or compute-bound when the roof itself is in doubt
UNRELIABLE = "the measured roof is unreliable (env.json roofline.reliable is false: its repeats disagreed by > 20 %)"


def roof_reliable(env: Mapping[str, Any]) -> bool:
    """False when env.json's roofline says its repeats disagreed (``"reliable": false``); a roofline without
    the key (an older run) is taken as reliable, as before."""
    roof = env.get("roofline") if isinstance(env, Mapping) else None
    return not (isinstance(roof, Mapping) and roof.get("reliable") is False)


def peaks(env: Mapping[str, Any], precision: str) -> tuple[float | None, float | None, str | None]:
    """(copy GB/s, matmul TFLOP/s at precision, reason when something is missing) from env.json."""
    roof = env.get("roofline")
    if not isinstance(roof, Mapping):
        return None, None, "env.json has no measured roofline"
    bw = roof.get("copy_gbps", roof.get("copy_bandwidth_gbs"))
    mm = roof.get("matmul_tflops")
    if isinstance(mm, Mapping):
        mm = mm.get(precision)
    bw = float(bw) if isinstance(bw, (int, float)) and bw > 0 else None
    mm = float(mm) if isinstance(mm, (int, float)) and mm > 0 else None
    missing = [n for n, v in (("copy bandwidth", bw), (f"{precision} matmul throughput", mm)) if v is None]
    return bw, mm, ("roofline lacks " + " and ".join(missing)) if missing else None


def roofline_fractions(df: pd.DataFrame, envs: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Achieved bandwidth and FLOP/s of every ok timed point, from its analytic ``cost`` block, and the
    fraction of the run's measured roofline: attainable = min(matmul peak, intensity × copy bandwidth).

    The bytes are the neuron's *minimum* traffic, so achieved GB/s is a floor of the real traffic; the
    compute roof is the measured dense-matmul rate, which element-wise work cannot reach, so memory-bound
    fractions are the meaningful ones. ``envs`` maps run label -> env.json.
    """
    ok = bench_ok(df)
    recs = []
    for _, row in ok.iterrows():
        flops = pd.to_numeric(row["cost.flops"], errors="coerce")
        nbytes = pd.to_numeric(row["cost.min_bytes"], errors="coerce")
        s = row[TIME] / 1e3
        rec = {k: row[k] for k in SETTING + ["neuron", "backend", "seq_len"]}
        rec.update(intensity=np.nan, achieved_gbs=np.nan, achieved_tflops=np.nan, fraction=np.nan, bound=None,
                   reason=None)
        if not (np.isfinite(flops) and np.isfinite(nbytes) and nbytes > 0):
            rec["reason"] = row.get("cost_reason") if isinstance(row.get("cost_reason"), str) else "no analytic cost"
            recs.append(rec)
            continue
        rec.update(intensity=flops / nbytes, achieved_gbs=nbytes / s / 1e9, achieved_tflops=flops / s / 1e12)
        env = envs.get(row["run"], {})
        bw, mm, why = peaks(env, row["precision"])
        if bw is not None and not roof_reliable(env):
            rec["reason"] = UNRELIABLE
        elif bw is not None and mm is not None:
            ridge = rec["intensity"] * bw / 1e3  # TFLOP/s the bandwidth allows at this intensity
            attainable = min(mm, ridge)
            rec["fraction"] = rec["achieved_tflops"] / attainable if flops > 0 else rec["achieved_gbs"] / bw
            rec["bound"] = "memory" if ridge < mm or flops == 0 else "compute"
        elif bw is not None:
            rec.update(fraction=rec["achieved_gbs"] / bw, bound="memory (bandwidth only)", reason=why)
        else:
            rec["reason"] = why
        recs.append(rec)
    cols = SETTING + ["neuron", "backend", "seq_len", "intensity", "achieved_gbs", "achieved_tflops", "fraction",
                      "bound", "reason"]
    return pd.DataFrame(recs, columns=cols)
