"""Helpers of benchmarks/bench_overhead.py: the synthetic banks and questions, timing
instrumentation, the medcompile and DSPy sides, the profile and the report. Not a library:
benchmark code. The script sets OPENBLAS_NUM_THREADS before any of these load numpy."""
