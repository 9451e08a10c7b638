"""``python -m perfsuite`` = the ``perfsuite`` command.

``python -m`` puts the current directory first on ``sys.path``; a scenario's ``plugin:`` entries are
imported during validation, so ``cd untrusted && python -m perfsuite validate x.yaml`` would run any
``untrusted/*.py`` a plugin path names. That entry is removed here (unless PYTHONPATH names the same
folder): plugins are imported from installed packages and PYTHONPATH only, as with the ``perfsuite``
entry point.
"""
import os
import sys


def _strip_cwd() -> None:
    if not sys.path or sys.path[0] not in ("", os.getcwd()):
        return
    explicit = {os.path.realpath(p or ".") for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p}
    if os.path.realpath(sys.path[0] or ".") not in explicit:
        del sys.path[0]


if __name__ == "__main__":  # spawned runner workers import this module too: do nothing there
    _strip_cwd()
    from perfsuite.cli import main

    main()
