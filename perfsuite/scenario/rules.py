"""Include and exclude rules: which point fields a rule tests and how its values match.

Owns: `rules` (validate a list of rules into `Rule` predicates, problems recorded), and the list
helpers `as_list` / `items` the validators share. May import: the standard library, `perfsuite.neurons`
and the scenario's errors, schema and expand modules.
"""
from __future__ import annotations

import operator
import re
from typing import Any, Callable

from .. import neurons
from .errors import Problems
from .expand import Rule
from .schema import COMPARISON_PATTERN, RULE_FIELDS, RULE_KEYS, SPAN_PATTERN, is_int, keyed

_RULES = keyed(RULE_KEYS)
_CMP_RE, _SPAN_RE = re.compile(COMPARISON_PATTERN), re.compile(SPAN_PATTERN)
_CMP_OPS: dict[str, Callable[[int, int], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq,
    "!=": operator.ne}


def as_list(v: Any) -> list:
    """A scalar stands for a one-element list (``precisions: fp32``)."""
    return v if isinstance(v, list) else [v]


def items(path: str, raw: Any) -> list[tuple[str, Any]]:
    """(key path, value) of each element: ``seq_lens[2]`` in a list, ``seq_lens`` for a scalar."""
    if isinstance(raw, list):
        return [(f"{path}[{i}]", v) for i, v in enumerate(raw)]
    return [(path, raw)]


def rules(pr: Problems, path: str, raw: Any, known_neurons: list[str]) -> list[Rule]:
    """Validated rules (a single mapping stands for a one-rule list); a rule with a problem is left out."""
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list):
        pr.add(path, raw, "a list of rules, each a mapping of point fields to a value or list of values")
        return []
    out = []
    for i, r in enumerate(raw):
        rp = f"{path}[{i}]"
        if not isinstance(r, dict) or not r:
            pr.add(rp, r, f"a non-empty mapping of point fields ({list(RULE_FIELDS)}) to a value or list")
            continue
        n0 = len(pr.items)
        pr.unknown_keys(rp, r, RULE_FIELDS + ("reason",), "unknown rule field")
        tests = {}
        for f, v in r.items():
            if f == "reason":
                if not isinstance(v, str):
                    pr.add(f"{rp}.reason", v, "a string saying why")
                continue
            if f in RULE_FIELDS:
                test = _rule_test(pr, f"{rp}.{f}", f, v, known_neurons)
                if test is not None:
                    tests[f] = test
        if len(pr.items) == n0:
            out.append(Rule(tests, r.get("reason")))
    return out


def _rule_test(pr: Problems, path: str, f: str, raw: Any, known_neurons: list[str]):
    """A predicate for one rule field: any listed value matches; numeric fields also take ranges."""
    if not as_list(raw):
        pr.add(path, raw, "a value or a non-empty list of values", "empty list")
        return None
    key = _RULES[f]
    choices = neurons.names() + known_neurons if f == "neuron" else key.choice_list()
    preds = []
    for vp, v in items(path, raw):
        if key.kind == "rule_int":
            pred = _numeric_pred(v)
            if pred is None:
                pr.add(vp, v, "an int >= 1, a comparison such as '>16000' or '<=2048', or a span '1000..8000'")
                return None
            preds.append(pred)
        else:
            if not isinstance(v, str) or v not in choices:
                pr.add(vp, v, f"one of {list(dict.fromkeys(choices))}", f"unknown {f}", choices)
                return None
            preds.append(lambda x, v=v: x == v)
    return lambda x: any(p(x) for p in preds)


def _numeric_pred(v: Any):
    if is_int(v) and v >= 1:
        return lambda x: x == v
    if isinstance(v, str) and len(v) <= 100:
        m = _CMP_RE.fullmatch(v)
        if m:
            op, n = _CMP_OPS[m.group(1)], int(m.group(2).replace("_", ""))
            return lambda x: op(x, n)
        m = _SPAN_RE.fullmatch(v)
        if m:
            lo, hi = int(m.group(1).replace("_", "")), int(m.group(2).replace("_", ""))
            if lo <= hi:
                return lambda x: lo <= x <= hi
    return None
