"""Fuzzing `perfsuite validate` with mutations of the shipped scenarios (#10, definition of done).

Each generated file must give exit 0, or exit 2 with a message naming the file, within a time bound and
without a traceback. Mutations: dropped and renamed keys, values of the wrong type, huge, negative and
non-finite numbers, unicode, deep nesting, long strings, and text-level damage (truncation, inserted
bytes, swapped lines). The default corpus (`N_FAST`) runs in well under a minute on 2 cores; the larger
one (`N_SLOW`) is marked ``slow``. Mutations never write a ``:`` into a neuron name, and validation runs
with ``--no-plugins``, so no generated file imports a module.
"""
from __future__ import annotations

import copy
import random
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from perfsuite import cli

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "scenarios").glob("*.yaml"))
SEED = 20261201
N_FAST = 240
N_SLOW = 1000
PER_CASE_S = 20.0

WEIRD = [None, True, False, 0, -1, -(2 ** 70), 2 ** 70, 2 ** 63, 1e308, -1e-308, float("inf"), float("nan"), 0.5,
         "", " ", "ünïcödé ☃ 𝔘", "\u202e\u0000x", "x" * 5000, "fp32", "eager", "lif", "8", "<script>", [], [[]],
         {}, {"a": {"b": {"c": {}}}}, [1, 2, 3], [None], {"start": 1, "stop": 10 ** 6, "step": 1},
         {"start": 1, "stop": 2 ** 62, "mul": 2}, {"start": 3, "stop": 1, "mul": 2}, "nested"]


def _deep(n: int):
    out: object = 1
    for _ in range(n):
        out = [out]
    return out


def _paths(node, prefix=()):
    """Every (path, container) pair: keys of mappings and indices of lists, depth first."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield prefix + (k,), node
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield prefix + (i,), node
            yield from _paths(v, prefix + (i,))


def _weird(rng: random.Random):
    v = rng.choice(WEIRD)
    if v == "nested":
        return _deep(rng.choice([10, 40, 70]))
    return copy.deepcopy(v)


def _mutate_data(data: dict, rng: random.Random) -> dict:
    data = copy.deepcopy(data)
    for _ in range(rng.randint(1, 3)):
        paths = list(_paths(data))
        if not paths:
            break
        path, container = rng.choice(paths)
        key = path[-1]
        op = rng.choice(["drop", "rename", "weird", "weird", "scale", "wrap", "dup"])
        if op == "drop":
            del container[key]
        elif op == "rename" and isinstance(container, dict):
            new = str(key)[::-1] if rng.random() < 0.5 else str(key) + rng.choice(["s", "_", "x", "é"])
            container[new.replace(":", "")] = container.pop(key)
        elif op == "scale" and isinstance(container[key], (int, float)) and not isinstance(container[key], bool):
            container[key] = container[key] * rng.choice([-1, 0, 10 ** 6, 10 ** 12, 1.5])
        elif op == "wrap":
            container[key] = [container[key]] if rng.random() < 0.5 else {"value": container[key]}
        elif op == "dup" and isinstance(container, list):
            container.append(copy.deepcopy(container[key]))
        else:
            container[key] = _weird(rng)
    return data


def _mutate_text(text: str, rng: random.Random) -> str:
    lines = text.splitlines(keepends=True)
    op = rng.choice(["truncate", "insert", "swap", "indent", "anchor"])
    if op == "truncate":
        return text[:rng.randrange(len(text) + 1)]
    if op == "insert":
        pos = rng.randrange(len(text) + 1)
        return text[:pos] + rng.choice(["{", "]", "&a ", "*a", "!!float x", "\t", "'", '"', "- ", "? ", "\\x00", "é",
                                        "---\n", "%TAG ! tag:x,2000:\n"]) + text[pos:]
    if op == "swap" and len(lines) > 1:
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
        return "".join(lines)
    if op == "indent" and lines:
        i = rng.randrange(len(lines))
        lines[i] = "  " + lines[i]
        return "".join(lines)
    return "x: &a [1, 2]\ny: [*a, *a, *a]\n" + text


def corpus(n: int, seed: int = SEED) -> list[tuple[str, str | bytes]]:
    """``n`` (case id, file content) pairs, deterministic for a seed."""
    rng = random.Random(seed)
    sources = [(p.stem, p.read_text(encoding="utf-8")) for p in SOURCES]
    out: list[tuple[str, str | bytes]] = []
    for i in range(n):
        stem, text = rng.choice(sources)
        kind = rng.random()
        if kind < 0.65:
            data = _mutate_data(yaml.safe_load(text), rng)
            content: str | bytes = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
        elif kind < 0.95:
            content = _mutate_text(text, rng)
        else:
            raw = bytearray(text.encode("utf-8"))
            raw[rng.randrange(len(raw))] = rng.choice([0xff, 0xfe, 0xc3, 0x00])
            content = bytes(raw)
        out.append((f"{i:04d}-{stem}", content))
    return out


def _check(tmp_path: Path, case: str, content: str | bytes) -> int:
    file = tmp_path / f"{case}.yaml"
    if isinstance(content, bytes):
        file.write_bytes(content)
    else:
        file.write_text(content, encoding="utf-8")
    t0 = time.monotonic()
    result = CliRunner().invoke(cli.app, ["validate", "--no-plugins", str(file)])
    took = time.monotonic() - t0
    assert took < PER_CASE_S, f"{case}: validate took {took:.1f} s"
    assert result.exit_code in (0, 2), f"{case}: exit {result.exit_code}: {result.exception!r}\n{result.output}"
    assert isinstance(result.exception, (SystemExit, type(None))), f"{case}: {result.exception!r}"
    assert "Traceback" not in result.output, case
    if result.exit_code == 2:
        assert f"{file}: invalid scenario" in result.output, f"{case}: no message\n{result.output}"
    else:
        assert f"{file}: valid;" in result.output
    return result.exit_code


def test_corpus_is_deterministic_and_varied():
    a, b = corpus(50), corpus(50)
    assert a == b and len({c for _, c in a}) >= 45


def test_fuzz_validate(tmp_path):
    codes = [_check(tmp_path, case, content) for case, content in corpus(N_FAST)]
    assert len(codes) >= 200
    assert codes.count(2) > len(codes) // 2 and 0 in codes  # the corpus reaches both outcomes


@pytest.mark.slow
def test_fuzz_validate_large_corpus(tmp_path):
    """About 0.1-0.2 s per case on a 2-core machine."""
    codes = [_check(tmp_path, case, content) for case, content in corpus(N_SLOW, seed=SEED + 1)]
    assert codes.count(2) > 0 and codes.count(0) > 0
