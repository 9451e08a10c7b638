"""Reading a scenario file safely: bounded in size, depth and alias expansion, strict about duplicate keys.

Owns: `read_yaml` -> (data, {key path: line}, [Problem]). A hostile or broken file never hangs, never
exhausts memory and never ends in a traceback: a file over `MAX_FILE_BYTES`, bytes that are not UTF-8,
nesting deeper than `MAX_DEPTH`, more than `MAX_NODES` nodes once aliases are expanded ("billion
laughs"), a value its tag cannot construct (``!!float abc``, a 5000-digit int) and a key given twice
each become a `Problem` naming the line. Only YAML's safe tags are constructed (``yaml.SafeLoader``).

May import: the standard library, yaml, and `perfsuite.scenario.errors`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import Problem, join

#: a scenario is a few kilobytes; a megabyte is already far more than any sweep needs
MAX_FILE_BYTES = 1 << 20
#: nesting of mappings and lists (a scenario needs about 5)
MAX_DEPTH = 64
#: nodes of the document with every alias expanded
MAX_NODES = 100_000


class _Reject(Exception):
    def __init__(self, line: int, what: str, expected: str):
        super().__init__(what)
        self.line, self.what, self.expected = line, what, expected


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader whose composer refuses deep nesting before Python's recursion limit is reached."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):  # noqa: D401 - yaml's hook
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _Reject(mark.line + 1, f"nesting deeper than {MAX_DEPTH} levels",
                              f"a scenario nested at most {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def read_yaml(path: Path, file: str) -> tuple[Any, dict[str, int], list[Problem]]:
    """Parse ``path``: (the data or None, the line of each key path, problems). When a problem
    prevents reading the data at all, the data is None and the problems say why."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return None, {}, [Problem("", file, "an existing scenario file (.yaml)", "file not found")]
    except IsADirectoryError:
        return None, {}, [Problem("", file, "a scenario file (.yaml), not a folder", "cannot read")]
    except OSError as exc:
        return None, {}, [Problem("", file, f"a readable file ({exc.strerror or exc})", "cannot read")]
    if len(raw) > MAX_FILE_BYTES:
        return None, {}, [Problem("", f"more than {MAX_FILE_BYTES} bytes", f"a file of at most {MAX_FILE_BYTES} "
                                  "bytes (a scenario is a few kilobytes)", "file too large:")]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        return None, {}, [Problem(f"line {line}", raw[exc.start:exc.start + 1], "UTF-8 text", f"byte {exc.start}:"
                                  " not UTF-8:", line=line)]
    return parse_yaml(text)


def parse_yaml(text: str) -> tuple[Any, dict[str, int], list[Problem]]:
    """`read_yaml` for text already in memory."""
    loader = None
    try:
        loader = _BoundedLoader(text)  # the reader refuses control characters here already
        node = loader.get_single_node()
        if node is None:
            return None, {}, []
        lines: dict[str, int] = {}
        problems: list[Problem] = []
        _walk(node, "", 0, lines, problems, {})
        data = loader.construct_document(node)
    except _Reject as exc:
        return None, {}, [Problem(f"line {exc.line}", exc.what, exc.expected, "YAML rejected:", line=exc.line)]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        return None, {}, [Problem(where, problem, "valid YAML", "YAML syntax error:",
                                  line=mark.line + 1 if mark is not None else 0)]
    except RecursionError:  # pragma: no cover - MAX_DEPTH is far below the recursion limit
        return None, {}, [Problem("", "nesting", f"a scenario nested at most {MAX_DEPTH} levels deep", "YAML rejected:")]
    except Exception as exc:  # noqa: BLE001 - a tag's constructor refused the text (e.g. a bad !!timestamp)
        return None, {}, [Problem("", _first_line(exc), "values YAML can construct", "YAML value error:")]
    finally:
        if loader is not None:
            loader.dispose()
    return data, lines, problems


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _walk(node: Node, path: str, depth: int, lines: dict[str, int], problems: list[Problem],
          sizes: dict[int, int]) -> int:
    """Record each key path's line, find duplicate keys, and check every scalar's tag can be built.
    Returns the node count with aliases expanded (memoised per node, so a bomb costs its distinct
    nodes only); raises `_Reject` past `MAX_NODES`."""
    if id(node) in sizes:  # an alias: counts again, walked once
        return sizes[id(node)]
    line = node.start_mark.line + 1
    if path and path not in lines:
        lines[path] = line
    count = 1
    if isinstance(node, ScalarNode):
        _check_scalar(node, path, problems)
    elif isinstance(node, SequenceNode):
        for i, item in enumerate(node.value):
            count += _walk(item, f"{path}[{i}]", depth + 1, lines, problems, sizes)
            _check_size(count, item)
    elif isinstance(node, MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, ScalarNode) else None
            key_line = key_node.start_mark.line + 1
            sub = join(path, str(key)) if key is not None else path
            if key is not None and key_node.tag != "tag:yaml.org,2002:merge":
                if key in seen:
                    problems.append(Problem(sub, key, f"each key once (first given on line {seen[key]})",
                                            f"duplicate key (line {key_line})", line=key_line))
                else:
                    seen[key] = key_line
                    lines.setdefault(sub, key_line)
            count += 1 + _walk(value_node, sub, depth + 1, lines, problems, sizes)
            _check_size(count, value_node)
    sizes[id(node)] = count
    return count


def _check_size(count: int, node: Node) -> None:
    if count > MAX_NODES:
        raise _Reject(node.start_mark.line + 1, f"more than {MAX_NODES} values once aliases are expanded",
                      f"a scenario of at most {MAX_NODES} values (anchors and aliases count once per use)")


_NUMERIC_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_CONSTRUCTOR = yaml.constructor.SafeConstructor()


def _check_scalar(node: ScalarNode, path: str, problems: list[Problem]) -> None:
    """Refuse scalars that the safe constructor would turn into a traceback or a huge value."""
    if node.tag in _NUMERIC_TAGS:
        digits = sum(ch.isdigit() for ch in node.value)
        if digits > 100:
            raise _Reject(node.start_mark.line + 1, f"a number of {digits} digits",
                          "a number of at most 100 digits")
        try:
            _CONSTRUCTOR.yaml_constructors[node.tag](_CONSTRUCTOR, node)
        except (ValueError, TypeError, yaml.YAMLError):
            raise _Reject(node.start_mark.line + 1, f"{node.value[:50]!r} is not a valid {node.tag.rsplit(':', 1)[-1]}",
                          "a value its tag can construct") from None
