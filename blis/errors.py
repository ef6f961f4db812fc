"""Exception types raised at blis's configuration boundary.

Messages follow ``"<where>: <field> must be <constraint>, got <value>; valid: a, b, c"``
so a user sees what was wrong and what to use instead.
"""


class BlisError(Exception):
    """Base class of every error blis raises on purpose."""


class ConfigError(BlisError):
    """Invalid or unresolvable configuration (model, hardware, latency backend, ...)."""
