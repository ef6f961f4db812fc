"""Compiled kernels (numba).

Contract for every module in this package: functions take numpy arrays and
numba-compatible scalars, return arrays, scalars or status codes, never raise on
validated input and never touch Python objects.  Kernel names end in ``_nb``.
All kernels share the jit flags in :mod:`blis.kernels.jit`.
"""
