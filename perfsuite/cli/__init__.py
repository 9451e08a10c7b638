"""The ``perfsuite`` command line (typer): run, validate, schema, list, env, merge, report, compare, ab, profile,
kernels.

Every user mistake (a bad scenario, a folder that already holds rows, a bad ``--shard``) prints one
clear message to stderr and exits with code 2, never a traceback. One small function per command.

The package sits on top of perfsuite: it may import any perfsuite module, and nothing but
``perfsuite.__main__`` imports it. ``common`` holds the ``app`` and what the commands share; each other
module registers its commands on that ``app`` when imported here, in the order ``--help`` lists them:
``run`` (run, dry run), ``inspect`` (validate, schema, list, env), ``results`` (merge, report, compare, ab),
``tools`` (profile, kernels).
"""
from __future__ import annotations

import sys

# each module registers its commands on `app` when imported: this order is the order of `perfsuite --help`
# isort: off
from . import run  # noqa: F401
from . import inspect  # noqa: F401
from . import results  # noqa: F401
from . import tools  # noqa: F401
# isort: on
from .common import EXIT_INTERRUPTED, EXIT_USAGE, app, err, fail, out  # noqa: F401  (the package's interface)


def main() -> None:
    """Entry point of the ``perfsuite`` script."""
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
