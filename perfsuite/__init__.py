"""perfsuite: the benchmark and profiling harness for parallel spiking neurons."""
__version__ = "0.1.0"
