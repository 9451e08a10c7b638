"""The jinja2 environment of the report templates (``perfsuite/report/templates``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import jinja2

TEMPLATES = Path(__file__).with_name("templates")


def environment(*, autoescape: bool) -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=autoescape,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                              keep_trailing_newline=True)


def render(template: str, *, autoescape: bool, filters: Mapping[str, Callable[..., Any]], **context: Any) -> str:
    """``template`` rendered with ``context``, the format's own ``filters`` added (`markdown`, `html`)."""
    env = environment(autoescape=autoescape)
    env.filters.update(filters)
    return env.get_template(template).render(**context)
