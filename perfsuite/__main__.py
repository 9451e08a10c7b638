"""``python -m perfsuite`` = the ``perfsuite`` command."""
from .cli import main

if __name__ == "__main__":  # spawned runner workers import this module too: do nothing there
    main()
