"""Validation problems and the error that carries them.

Owns: `Problem` (one located problem), `ScenarioError` (every problem of one file), `Problems` (the
collector the validators add to). May import: the standard library and `perfsuite.neurons.registry`
(close matches for "did you mean").
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping

from ..neurons.registry import closest

MISSING = "missing key"


@dataclass(frozen=True)
class Problem:
    """One validation problem: where (key path, and the file's line when known), what was found, what
    is allowed, a close match."""

    path: str
    value: Any
    expected: str
    what: str = "invalid value"
    suggestion: str = ""
    #: 1-based line of the key in the file (0 = unknown)
    line: int = 0

    def render(self, file: str) -> str:
        hint = f" (did you mean {self.suggestion!r}?)" if self.suggestion else ""
        where = self.path or "(top level)"
        found = self.what if self.what == MISSING else f"{self.what} {_short(self.value)}"
        at = f":{self.line}" if self.line and not self.path.startswith("line ") else ""
        return f"{file}{at}: {where}: {found}; expected {self.expected}{hint}"


def _short(value: Any, limit: int = 200) -> str:
    """``repr(value)``, cut to ``limit`` characters (a hostile file may hold a megabyte string)."""
    try:
        text = repr(value)
    except Exception:  # pragma: no cover - a value from YAML always has a repr
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


class ScenarioError(ValueError):
    """A scenario file is invalid. ``problems`` lists every problem found; ``str()`` is the message
    for the user (one line per problem). ``path``/``value``/``expected``/``suggestion`` are those of
    the first problem."""

    def __init__(self, file: str, problems: list[Problem]):
        self.file = str(file)
        self.problems = list(problems)
        super().__init__(str(self))

    @property
    def path(self) -> str:
        return self.problems[0].path

    @property
    def value(self) -> Any:
        return self.problems[0].value

    @property
    def expected(self) -> str:
        return self.problems[0].expected

    @property
    def suggestion(self) -> str:
        return self.problems[0].suggestion

    def __str__(self) -> str:
        n = len(self.problems)
        head = f"{self.file}: invalid scenario ({n} problem{'s' if n != 1 else ''})"
        return "\n".join([head] + ["  " + p.render(self.file) for p in self.problems])


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class Problems:
    """Collects problems while the whole file is checked."""

    def __init__(self) -> None:
        self.items: list[Problem] = []

    def add(self, path: str, value: Any, expected: str, what: str = "invalid value", choices=None) -> None:
        sug = closest(value, choices) if choices is not None and isinstance(value, str) else ""
        self.items.append(Problem(path, value, expected, what, sug))

    def unknown_keys(self, path: str, data: Mapping, allowed, what: str = "unknown key") -> None:
        for k in data:
            if k not in allowed:
                self.add(join(path, str(k)), k, f"one of {list(allowed)}", what, allowed)

    def located(self, lines: Mapping[str, int]) -> list[Problem]:
        """The problems with their file line: that of the key path, else of its closest parent."""
        return [replace(p, line=p.line or line_of(p.path, lines)) for p in self.items]


def line_of(path: str, lines: Mapping[str, int]) -> int:
    while path:
        if path in lines:
            return lines[path]
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return 0
