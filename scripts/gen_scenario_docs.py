#!/usr/bin/env python3
"""Regenerate what perfsuite/scenario/schema.py generates: scenario.schema.json (the JSON Schema) and the
key reference in docs/scenarios.md (between its markers). `--check` only compares and exits 1 when
either file is stale (tests/test_scenario_schema.py checks the same)."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perfsuite.scenario.reference import json_schema_text, replace_reference  # noqa: E402

SCHEMA_FILE = ROOT / "scenario.schema.json"
DOC_FILE = ROOT / "docs" / "scenarios.md"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    wanted = {SCHEMA_FILE: json_schema_text(), DOC_FILE: replace_reference(DOC_FILE.read_text(encoding="utf-8"))}
    stale = [p for p, text in wanted.items() if not p.exists() or p.read_text(encoding="utf-8") != text]
    if check:
        for p in stale:
            print(f"{p.relative_to(ROOT)} is stale: run python3 scripts/gen_scenario_docs.py", file=sys.stderr)
        return 1 if stale else 0
    for p in stale:
        p.write_text(wanted[p], encoding="utf-8")
        print(f"wrote {p.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
