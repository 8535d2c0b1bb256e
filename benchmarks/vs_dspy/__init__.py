"""Helpers of benchmarks/bench_vs_dspy.py: the run context (deadline, server, proxy,
results), reading answers out of DSPy's replies, the medcompile and DSPy compiles, and the
MD/PNG report. Not a library: benchmark code."""
