"""Helpers of benchmarks/bench_optimizer_regret.py: data and worlds, the medcompile and
DSPy runners, statistics and the MD/PNG report. Not a library: benchmark code."""
