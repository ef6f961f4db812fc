"""Workload sources: distribution flags, presets, workload specs and TraceV2 traces."""
