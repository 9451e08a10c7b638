"""``python -m perfsuite`` = the ``perfsuite`` command.

``python -m`` puts the current directory first on ``sys.path``; a scenario's ``plugin:`` entries are
imported during validation, so ``cd untrusted && python -m perfsuite validate x.yaml`` would run any
``untrusted/*.py`` a plugin path names. That entry is removed here, unless PYTHONPATH names the same
folder or perfsuite itself was imported from it (a checkout run in place, whose workers need it):
plugins are imported from installed packages and PYTHONPATH only, as with the ``perfsuite`` entry point.
"""
import os
import sys


def _strip_cwd() -> None:
    if not sys.path or sys.path[0] not in ("", os.getcwd()):
        return
    first = os.path.realpath(sys.path[0] or ".")
    keep = {os.path.realpath(p or ".") for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p}
    keep.add(os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)))
    if first not in keep:
        del sys.path[0]


if __name__ == "__main__":  # spawned runner workers import this module too: do nothing there
    _strip_cwd()
    from perfsuite.cli import main

    main()
