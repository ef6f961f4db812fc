"""Step-time dispatch: one entry point the engine calls for every step.

``step_time_nb(code, params, pf_pi, pf_new, pf_len, n_pf, dc_pi, n_dc, n_sched)``

* ``code``: backend code (BACKEND_* below), ``params``: the backend's float64
  parameter vector (packed once per run by the backend's Python side).
* prefill requests of the step, in batch order: ``pf_pi[k]`` (ProgressIndex at
  step start), ``pf_new[k]`` (NumNewTokens), ``pf_len[k]`` (input length), for
  ``k < n_pf``;
* decode requests of the step, in batch order: ``dc_pi[k]`` for ``k < n_dc``;
* ``n_sched``: number of requests with NumNewTokens > 0 (includes requests that
  contribute neither prefill nor decode work).

Post-condition: the result is an int64 >= 1 (the clock always advances).
"""
import numpy as np

from .jit import njit
from .roofline import roofline_step_time_nb
from .trained_physics import trained_physics_step_time_nb

BACKEND_ROOFLINE = 0
BACKEND_TRAINED_PHYSICS = 1
BACKEND_LINEAR = 2  # params = [base_us, us_per_prefill_token, us_per_decode] (BLIS's legacy "blackbox" form)
BACKEND_CONSTANT = BACKEND_LINEAR  # older name


@njit(inner=True)
def linear_step_time_nb(params, pf_pi, pf_new, pf_len, n_pf, dc_pi, n_dc, n_sched):
    t = params[0]
    for k in range(n_pf):
        t += params[1] * pf_new[k]
    t += params[2] * n_dc
    v = np.int64(t)
    return v if v >= 1 else np.int64(1)


@njit
def step_time_nb(code, params, pf_pi, pf_new, pf_len, n_pf, dc_pi, n_dc, n_sched):
    if code == BACKEND_ROOFLINE:
        return roofline_step_time_nb(params, pf_pi, pf_new, pf_len, n_pf, dc_pi, n_dc, n_sched)
    if code == BACKEND_TRAINED_PHYSICS:
        return trained_physics_step_time_nb(params, pf_pi, pf_new, pf_len, n_pf, dc_pi, n_dc, n_sched)
    if code == BACKEND_LINEAR:
        return linear_step_time_nb(params, pf_pi, pf_new, pf_len, n_pf, dc_pi, n_dc, n_sched)
    return np.int64(1)
