"""The scenario schema, declared once: every key with its type, bounds, default, choices and one line of help.

Validation (`perfsuite.scenario.validate`), the JSON Schema (`perfsuite schema`, ``scenario.schema.json``)
and the key reference in ``docs/scenarios.md`` (`perfsuite.scenario.reference`) are all generated from
the `Key` declarations below; nothing else lists a key, a bound or a default.

May import: the standard library and `perfsuite.neurons` (for the registered names and backends).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

from .. import neurons

PRECISIONS = ("fp32", "bf16", "fp16")
MODES = ("forward", "train", "step")
WORKLOADS = ("layer", "network")
METRICS = ("time", "memory", "energy", "activity", "agreement")
DEVICES = ("auto", "cpu", "cuda")
#: torch.manual_seed takes seeds below 2**64; the runs add small offsets to the seed, so stay below 2**63
MAX_SEED = 2 ** 63 - 1
#: at most this many values from one range mapping (a typo such as ``mul: 1.0001`` should not hang)
MAX_RANGE_VALUES = 10_000
#: at most this many points per scenario (the product of the axes, before include/exclude rules)
MAX_POINTS = 100_000
#: integer neuron parameters (sizes such as ``k`` or ``levels``) are at most this during validation,
#: which builds the neuron; a parameter whose name ends in ``seed`` is bounded by MAX_SEED instead
MAX_NEURON_INT = 2 ** 20

#: integer task parameters (``vocab``, ``regimes``, ``channels``) are at most this: validation builds the task
MAX_TASK_INT = 256

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.\-]*"
PLUGIN_PATTERN = r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*"
COMPARISON_PATTERN = r"\s*(<=|>=|<|>|==|!=)\s*([0-9][0-9_]*)\s*"
SPAN_PATTERN = r"\s*([0-9][0-9_]*)\s*\.\.\s*([0-9][0-9_]*)\s*"


def backend_choices() -> list[str]:
    return neurons.backend_names()


@dataclass(frozen=True)
class Key:
    """One scenario key.

    ``kind`` is one of: ``str``, ``int``, ``number``, ``bool``, ``choice`` (one of ``choices``),
    ``choices`` (a list of them; a single value stands for a one-element list), ``ints`` (a sweep axis:
    ints >= 1 or a range mapping), ``int_list`` (a plain non-empty list of ints >= 1), ``mapping`` (of
    ``keys``), ``params`` (a free mapping), and the structured kinds ``neurons``, ``rules``, ``workload``
    validated by their own functions in `perfsuite.scenario.validate`."""

    name: str
    kind: str
    help: str
    default: Any = None
    required: bool = False
    #: bounds of ``int``/``number`` (gt/lt exclusive)
    ge: float | None = None
    gt: float | None = None
    lt: float | None = None
    le: float | None = None
    nullable: bool = False
    #: choices of ``choice``/``choices``: a tuple, or a function returning the list (backends, known at run time)
    choices: tuple | Callable[[], list] | None = None
    #: the noun in "unknown backend 'x'" for ``choice``/``choices``
    noun: str = ""
    pattern: str | None = None
    keys: tuple = ()
    #: what the docs show as the default when it is not a plain value
    default_doc: str = ""
    #: the expected text of an invalid value, when the generated one would say less
    expected_text: str = ""

    def choice_list(self) -> list:
        c = self.choices() if callable(self.choices) else self.choices
        return list(c or ())

    def expected(self) -> str:
        """What an invalid value is told to be instead."""
        if self.expected_text:
            return self.expected_text
        null = " or null" if self.nullable else ""
        if self.kind == "int":
            if self.le is not None:
                return f"an int >= {_num(self.ge)} and <= {_num(self.le)}{null}"
            return f"an int >= {_num(self.ge if self.ge is not None else 0)}{null}"
        if self.kind == "number":
            op, bound = (">", self.gt) if self.gt is not None else (">=", self.ge)
            return f"a number {op} {_num(bound)}{null}"
        if self.kind == "bool":
            return "true or false"
        if self.kind == "choice":
            return f"one of {self.choice_list()}"
        if self.kind == "str":
            return "a string"
        if self.kind in ("mapping", "params"):
            return f"a mapping with keys {[k.name for k in self.keys]}" if self.keys else "a mapping"
        return self.help

    def check(self, v: Any) -> bool:
        """Whether a scalar value is valid for a scalar kind (int, number, bool, choice, str)."""
        if v is None:
            return self.nullable
        if self.kind == "int":
            return is_int(v) and _in_bounds(self, v)
        if self.kind == "number":
            return is_num(v) and _in_bounds(self, v)
        if self.kind == "bool":
            return isinstance(v, bool)
        if self.kind == "choice":
            return isinstance(v, str) and v in self.choice_list()
        if self.kind == "str":
            return isinstance(v, str) and (not self.required or bool(v))
        if self.kind in ("mapping", "params"):
            return isinstance(v, dict)
        if self.kind == "int_list":
            return isinstance(v, list) and bool(v) and all(is_int(x) and x >= 1 for x in v)
        return True


def _num(x: float | None) -> str:
    return str(int(x)) if x is not None and float(x).is_integer() and abs(x) < 2 ** 64 else str(x)


def _in_bounds(k: Key, v: float) -> bool:
    return ((k.ge is None or v >= k.ge) and (k.gt is None or v > k.gt) and (k.le is None or v <= k.le)
            and (k.lt is None or v < k.lt))


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v: Any) -> bool:
    import math

    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def keyed(keys: tuple) -> dict[str, Key]:
    return {k.name: k for k in keys}


# --------------------------------------------------------------------------------------------- blocks
TIMING = (
    Key("warmup_ms", "number", "warm-up budget in milliseconds", 25.0, ge=0),
    Key("rep_ms", "number", "measurement budget in milliseconds", 100.0, gt=0),
    Key("min_reps", "int", "at least this many timed repetitions", 5, ge=1),
    Key("max_reps", "int", "at most this many timed repetitions (>= min_reps)", 1000, ge=1),
    Key("cold_start", "bool", "time the first call (compilation included) separately", True),
    Key("threads", "int", "torch intra-op threads while measuring", 1, ge=1, nullable=True,
        default_doc="1 on the CPU for `layer` workloads, else null (null = torch's default)"),
)
LIMITS = (
    Key("timeout_s", "number", "per point; a point past it becomes a `timeout` row", 300.0, gt=0),
    Key("memory_gb", "number", "points predicted to need more are skipped (null = the device's memory)", None,
        gt=0, nullable=True, default_doc="null (the device's memory)"),
    Key("reference_max_len", "int", "agreement with the float64 reference only when seq_len <= this", 2048, ge=0),
)
WORKLOAD_LAYER = (
    Key("type", "choice", "`layer`: one neuron layer on a calibrated Gaussian drive", "layer", choices=WORKLOADS),
    Key("target_rate", "number", "firing rate the drive is calibrated to", 0.1, gt=0, lt=1,
        expected_text="a firing rate strictly between 0 and 1 (e.g. 0.1)"),
)
WORKLOAD_NETWORK = (
    Key("type", "choice", "`network`: Linear -> neuron blocks from `features` through `hidden` to `outputs`",
        "network", choices=WORKLOADS),
    Key("layers", "int", "blocks of Linear -> neuron", 4, ge=1),
    Key("hidden", "int", "width of the hidden blocks", None, ge=1, nullable=True,
        default_doc="the point's `features`"),
    Key("outputs", "int", "width of the last block", None, ge=1, nullable=True, default_doc="`hidden`"),
    WORKLOAD_LAYER[1],
)
#: the workload parameters of each type (the point's ``workload_params``)
WORKLOAD_PARAMS = {"layer": WORKLOAD_LAYER[1:], "network": WORKLOAD_NETWORK[1:]}

#: sweep axes: scenario-level lists that a neuron entry may override for itself
AXES_KEYS = (
    Key("backends", "choices", "backends to measure (`perfsuite list backends`)", ["eager"],
        choices=backend_choices, noun="backend"),
    Key("seq_lens", "ints", "sequence lengths T", None, required=True),
    Key("batch", "ints", "batch sizes B", [1]),
    Key("features", "ints", "features F per time step; the layer input is [T, B, F]", None, required=True),
    Key("precisions", "choices", "precisions", ["fp32"], choices=PRECISIONS, noun="precision"),
    Key("modes", "choices", "`forward` (no grad), `train` (forward + backward), `step` (serial inference)",
        ["forward"], choices=MODES, noun="mode"),
)
AXES = tuple(k.name for k in AXES_KEYS)

NEURON_ENTRY = (
    Key("name", "choice", "a registered neuron (`perfsuite list neurons`)", None, choices=neurons.names,
        noun="neuron"),
    Key("plugin", "str", "a user's Neuron subclass, 'package.module:ClassName' (imports and runs that code)",
        None, pattern=PLUGIN_PATTERN),
    Key("params", "params", "constructor parameters (`seq_len` comes from seq_lens, DSN's `features` from the "
        "layer width)", {}),
) + tuple(replace(k, required=False, default_doc=f"the top-level `{k.name}`") for k in AXES_KEYS)

#: fields an include/exclude rule may test (``neurons`` = batch x features), plus a free-text reason
RULE_KEYS = (
    Key("neuron", "choices", "a registered name or a plugin path of this file", None, noun="neuron"),
    Key("backend", "choices", "backend", None, choices=backend_choices, noun="backend"),
    Key("seq_len", "rule_int", "T: an int, a comparison ('>16000') or a span ('1000..8000')"),
    Key("batch", "rule_int", "B: as seq_len"),
    Key("features", "rule_int", "F: as seq_len"),
    Key("neurons", "rule_int", "B x F: as seq_len"),
    Key("precision", "choices", "precision", None, choices=PRECISIONS, noun="precision"),
    Key("mode", "choices", "mode", None, choices=MODES, noun="mode"),
    Key("workload", "choices", "workload", None, choices=WORKLOADS, noun="workload"),
    Key("device", "choices", "device", None, choices=DEVICES[1:], noun="device"),
    Key("reason", "str", "why (shown with the left-out points)"),
)
RULE_FIELDS = tuple(k.name for k in RULE_KEYS if k.name != "reason")
NUMERIC_RULE_FIELDS = tuple(k.name for k in RULE_KEYS if k.kind == "rule_int")

#: the fields of `perfsuite.extrapolation.ExtrapolationConfig`, which gives each a default (so none is
#: required here); ``neurons`` is the top-level list restricted to registered names with ``params``
EXTRAPOLATION = (
    Key("task", "str", "task name (e.g. `markov_lm`)", None, required=True,
        expected_text="a task name (a non-empty string)"),
    Key("task_params", "params", "task parameters", None, expected_text="a mapping of task parameters"),
    Key("train_len", "int", "training sequence length", None, ge=1),
    Key("eval_lens", "int_list", "evaluation lengths", None, expected_text="a non-empty list of ints >= 1"),
    Key("steps", "int", "training steps", None, ge=1),
    Key("batch", "int", "training batch size", None, ge=1),
    Key("eval_batch", "int", "evaluation batch size", None, ge=1),
    Key("hidden", "int", "model width", None, ge=1, expected_text="an int >= 1 (model width)"),
    Key("layers", "int", "model depth", None, ge=1, expected_text="an int >= 1 (model depth)"),
    Key("lr", "number", "learning rate", None, gt=0),
    Key("weight_decay", "number", "weight decay", None, ge=0),
    Key("precision", "choice", "training precision", None, choices=PRECISIONS),
    Key("backend", "choice", "backend of the trained neurons", None, choices=backend_choices,
        expected_text="a backend name (perfsuite list backends)"),
    Key("seed", "int", "seed", None, ge=0, le=MAX_SEED, expected_text="an int >= 0 and < 2**63"),
    Key("serial_check_len", "int", "length at which serial-capable neurons are also run step by step", None, ge=1),
    Key("neurons", "neurons", "as the top-level list, without plugins or axis overrides; values checked at "
        "train_len"),
)

TOP = (
    Key("name", "str", "names the run folder and every row's `scenario`: letters, digits, '_', '-', '.'", None,
        required=True, pattern=NAME_PATTERN,
        expected_text="a non-empty name of letters, digits, '_', '-', '.' (it names the run folder)"),
    Key("description", "str", "free text", ""),
    Key("neurons", "neurons", "neuron entries: a name, a plugin path, or {name|plugin, params, axes}", None,
        default_doc="**required** (unless the file has only an `extrapolation` block)"),
) + AXES_KEYS + (
    Key("workload", "workload", "`layer`, `network`, or a mapping {type, ...}", "layer"),
    Key("metrics", "choices", "metrics to record", list(METRICS), choices=METRICS, noun="metric"),
    Key("timing", "mapping", "time budgets, as `triton.testing.do_bench`", {}, keys=TIMING),
    Key("limits", "mapping", "per-point limits", {}, keys=LIMITS),
    Key("seed", "int", "seed of every point (drive, parameter init, stochastic neurons)", 0, ge=0, le=MAX_SEED,
        expected_text="an int >= 0 and < 2**63 (torch's seeds are below 2**64; runs add small offsets)"),
    Key("include", "rules", "when given, only points matching at least one rule are kept", []),
    Key("exclude", "rules", "points matching any rule are left out", []),
    Key("device", "choice", "`auto` (cuda if visible, else cpu), `cpu`, `cuda`; `--device` overrides it", "auto",
        choices=DEVICES),
    Key("extrapolation", "mapping", "train-short / evaluate-long block (perfsuite/extrapolation.py)", None,
        nullable=True, keys=EXTRAPOLATION),
)
TOP_KEYS = tuple(k.name for k in TOP)
NEURON_KEYS = tuple(k.name for k in NEURON_ENTRY)
#: the blocks the key reference documents, in order: (title, anchor text, keys)
BLOCKS = (("Top-level keys", TOP), ("Neuron entry keys", NEURON_ENTRY), ("Timing keys", TIMING),
          ("Limits keys", LIMITS), ("Layer workload keys", WORKLOAD_LAYER), ("Network workload keys", WORKLOAD_NETWORK),
          ("Rule keys", RULE_KEYS), ("Extrapolation keys", EXTRAPOLATION))
