"""Output of `perfsuite ab`: ``ab.md``, ``ab.json`` and the console table of a result ``r`` (an
`perfsuite.ab.ABResult`, which `perfsuite.ab` passes in: this module imports nothing of it)."""
from __future__ import annotations

import json


def _refs_line(r) -> str:
    def one(side: str) -> str:
        ref = r.refs[side]
        return f"{side} {ref['ref']} ({(ref['commit'] or 'no commit')[:12]})"
    over = ", ".join(f"{s} {v:.2f} s" for s, v in r.overhead_s.items() if v is not None) or "not measured"
    how = f"{r.chunks} alternated chunks a side per round" if r.chunks > 1 else "each side's round whole"
    return (f"{one('baseline')} vs {one('candidate')}; {r.rounds} interleaved rounds ({how}; paired ratio of "
            f"the rounds' {r.round_stat}s); per-round overhead "
            f"(median, outside the measurement): {over}; wall {r.wall_s:.0f} s")


def to_markdown(r) -> str:
    from .compare_output import to_markdown as comparison_markdown
    from .text import md_text

    body = comparison_markdown(r.comparison, title="perfsuite ab (interleaved A/B)")
    head, _, rest = body.partition("\n")
    return f"{head}\n\n{md_text(_refs_line(r))}\n{rest}"


def to_json(r) -> str:
    from .compare import json_safe
    from .compare_output import _headline

    return json.dumps(json_safe(r.to_dict() | {"headline": _headline(r.comparison)}), indent=1, default=str,
                      allow_nan=False) + "\n"


def render(r, console) -> None:
    from rich.text import Text

    from .compare_output import render_table

    console.print(Text(_refs_line(r)))
    render_table(r.comparison, console, title="perfsuite ab")
