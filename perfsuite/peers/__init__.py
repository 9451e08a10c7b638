"""Adapters that run other libraries' neurons as perfsuite backends (optional extra ``perfsuite[peers]``).

Each adapter module registers a backend named after the library (`perfsuite.neurons.registry` loads it
on first use and reports the backend as unavailable when the library is missing)."""
