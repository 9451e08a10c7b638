"""Analysis of stored rows: scaling fits, crossovers, speed-ups, backend ratios, roofline fractions,
firing rates, extrapolation summaries, comparisons between runs, the papers' claims, the kernel profiles
and the report's figure specs.

Everything works on the flat DataFrame of `perfsuite.results.to_frame` plus a ``run`` column (the run's
label), so it runs anywhere the rows are, GPU or not. Each function returns a DataFrame; a quantity that
cannot be computed is NaN (or None) and a ``*_reason`` column says why, so a report can print "—" and the
reason instead of crashing or inventing a number.

"Settings" are the fields that must be equal for two times to be compared: run, mode, precision,
workload, device, batch and features (`SETTING`). Speed-ups and crossovers compare each neuron's *best*
backend at each sequence length (the time a user would get), unless said otherwise.

Layout (each module may import only the ones listed before it, plus perfsuite.results, perfsuite.neurons,
perfsuite.profile's file name and perfsuite.kernels_static's format; nothing here imports report, compare,
runner or cli):

    frames     run folders -> one DataFrame, settings, neuron order, ok timed points
    speedups   best backend, speed-ups over LIF/PSN with their bounds, backend ratios, runs side by side
    fits       power-law fits of time vs T, crossovers
    roofline   achieved rates against the measured roofline
    activity   firing rates, energy, extrapolation, points not ok
    claims     the papers' claims against the rows
    profiles   kernel profiles of profiled points
    static_kernels  a run folder's static kernel report (kernels_static.json) beside its profiles
    load            rows measured under load (busy machine, throttled GPU clocks)
    bundle     `analyse`: all of the above once, as an `Analysis`
    figures    what each report figure plots, in which order, with which palette (`figure_specs`)
"""
from __future__ import annotations

from .activity import activity_summary, extrapolation_summary, metric_reason, not_ok
from .bundle import Analysis, analyse
from .claims import (
                     CLAIM_KINDS,
                     CLAIM_SETTINGS,
                     Claim,
                     _verdict_number,
                     claim_settings,
                     comparable_rows,
                     evaluate_claim,
                     evaluate_claims,
                     load_claims,
)
from .figures import FigurePlan, FigureSpec, Style, figure_specs
from .fits import FIT_CROSS_REACH, crossovers, default_pairs, fit_power_law, scaling_fits
from .frames import (
                     BASELINES,
                     MODE_ORDER,
                     OWN_BACKENDS,
                     SETTING,
                     TIME,
                     Run,
                     bench_ok,
                     frame,
                     gpu_name,
                     load_runs,
                     mode_order,
                     neuron_order,
                     neuron_rank,
                     setting_label,
)
from .load import UNDER_LOAD_COLUMNS, under_load
from .profiles import PROFILE_COLUMNS, PROFILE_SOURCES, kernel_profiles
from .roofline import UNRELIABLE, peaks, roof_reliable, roofline_fractions
from .speedups import NOISY, NOT_RANKED, backend_ratios, best_backend, compare_runs, interval, speedups
from .static_kernels import STATIC_COLUMNS, STATIC_FILE_COLUMNS, read_static_report, static_kernels

__all__ = [
    "activity_summary", "analyse", "Analysis", "backend_ratios", "BASELINES", "bench_ok", "best_backend", "Claim",
    "CLAIM_KINDS", "claim_settings", "CLAIM_SETTINGS", "comparable_rows", "compare_runs", "crossovers",
    "default_pairs", "evaluate_claim", "evaluate_claims", "extrapolation_summary", "figure_specs", "FigurePlan",
    "FigureSpec", "FIT_CROSS_REACH", "fit_power_law", "frame", "gpu_name", "interval", "kernel_profiles",
    "load_claims", "load_runs", "metric_reason", "mode_order", "MODE_ORDER", "neuron_order", "neuron_rank", "NOISY",
    "not_ok", "NOT_RANKED", "OWN_BACKENDS", "peaks", "PROFILE_COLUMNS", "PROFILE_SOURCES", "roof_reliable",
    "read_static_report", "roofline_fractions", "Run", "scaling_fits", "SETTING", "setting_label", "speedups",
    "STATIC_COLUMNS", "STATIC_FILE_COLUMNS", "static_kernels", "UNDER_LOAD_COLUMNS", "under_load", "Style", "TIME",
    "UNRELIABLE", "_verdict_number",
]
