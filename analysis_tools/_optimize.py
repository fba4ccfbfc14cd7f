"""The one optimizer of the package's maximum-likelihood fits: BFGS on the host, in float64.

`analysis_tools.noise.fit_noise_distribution` (2–4 parameters per law) and
`analysis_tools.updates.fit_update_distribution` (m, and each mixture
component's location and m) minimize a negative mean log-likelihood whose
value and gradient are one traced TensorFlow function each; the iteration
itself is a few dense 4 × 4 updates, which cost nothing on the host, and
tracing no optimizer loop saves seconds on a process's first fit.
"""

import numpy as np
import tensorflow as tf

__all__ = ["bfgs", "on_host"]


def on_host(value_and_gradient, *arguments):
    """x ↦ (f as a float, ∇f as a float64 array) for `bfgs`, from a TensorFlow function of (x, *arguments).

    `value_and_gradient` is a traced function of a float64 position and fixed
    tensors (the samples); the position goes in as a float64 tensor.
    """

    def evaluate(position):
        value, gradient = value_and_gradient(tf.constant(position, tf.float64), *arguments)
        return float(value), gradient.numpy()

    return evaluate


def bfgs(value_and_gradient, start, tolerance=1e-10, max_iterations=500):
    """(f, x, converged) at the minimum of f from `start`, by BFGS on the host in float64.

    The inverse-Hessian update of Nocedal and Wright (2006, Eq. 6.17), scaled by
    sᵀy/yᵀy before the first (Eq. 6.20) and skipped where sᵀy ≤ 0; a
    backtracking line search to the Armijo condition (c = 1e-4) that also halves
    the step away from non-finite values. It stops, converged, when
    max|∇f| ≤ `tolerance`, when no step along the direction decreases f any
    more, or when f falls by less than 1e-14 |f| two steps running (f is at its
    minimum to rounding, and x to about √ε ≈ 1e-8 relative, far inside a fit's
    standard error; or f creeps along a flat ridge such as ν → ∞); it stops
    unconverged after `max_iterations` steps or at a non-finite f.

    Args:
        value_and_gradient: x (a float64 vector) ↦ (f(x) as a float, ∇f(x) as a vector).
        start: The starting point.
        tolerance: The largest |∂f/∂x_i| of a minimum.
        max_iterations: BFGS steps at most.
    """
    x = np.asarray(start, np.float64)
    f, g = value_and_gradient(x)
    inverse, stalled = None, 0
    for _ in range(max_iterations):
        if not np.isfinite(f):
            return f, x, False
        if np.max(np.abs(g)) <= tolerance:
            return f, x, True
        direction = -(g if inverse is None else inverse @ g)
        slope = float(g @ direction)
        if slope >= 0.0:  # not a descent direction: restart from the gradient
            inverse, direction, slope = None, -g, -float(g @ g)
        step = 1.0
        while True:
            x_new = x + step * direction
            f_new, g_new = value_and_gradient(x_new)
            if np.isfinite(f_new) and np.all(np.isfinite(g_new)) and f_new <= f + 1e-4 * step * slope:
                break
            step *= 0.5
            if step < 1e-16:
                return f, x, True
        s, y = x_new - x, g_new - g
        curvature = float(s @ y)
        if curvature > 0.0:
            if inverse is None:
                inverse = np.eye(len(x)) * curvature / float(y @ y)
            rho, identity = 1.0 / curvature, np.eye(len(x))
            inverse = (identity - rho * np.outer(s, y)) @ inverse @ (identity - rho * np.outer(y, s)) + rho * np.outer(
                s, s
            )
        stalled = stalled + 1 if f - f_new <= 1e-14 * max(1.0, abs(f)) else 0
        x, f, g = x_new, f_new, g_new
        if stalled == 2:
            return f, x, True
    converged = bool(np.isfinite(f) and np.max(np.abs(g)) <= tolerance)
    return f, x, converged
