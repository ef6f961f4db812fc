"""Performance benchmarks for blis (pytest-benchmark), grouped kernel / step / simulation.

See ``benchmarks/README.md`` for what each benchmark measures and how to run them.
"""
