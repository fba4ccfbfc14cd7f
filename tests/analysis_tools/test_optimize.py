"""`analysis_tools._optimize.bfgs`, the optimizer of the noise and update fits, against minima known in closed form."""

import numpy as np

from analysis_tools._optimize import bfgs


def _rosenbrock(x):
    value = 100.0 * (x[1] - x[0] ** 2) ** 2 + (1.0 - x[0]) ** 2
    gradient = np.array([-400.0 * x[0] * (x[1] - x[0] ** 2) - 2.0 * (1.0 - x[0]), 200.0 * (x[1] - x[0] ** 2)])
    return value, gradient


def test_bfgs_finds_the_rosenbrock_and_quadratic_minima():
    value, x, converged = bfgs(_rosenbrock, [-1.2, 1.0])
    np.testing.assert_allclose(x, [1.0, 1.0], atol=1e-6)
    assert value < 1e-12 and converged
    a = np.array([[4.0, 1.0, 0.0], [1.0, 3.0, 0.5], [0.0, 0.5, 2.0]])
    b = np.array([1.0, -2.0, 0.5])
    value, x, converged = bfgs(lambda x: (0.5 * x @ a @ x - b @ x, a @ x - b), np.zeros(3))
    np.testing.assert_allclose(x, np.linalg.solve(a, b), rtol=1e-7)  # f to rounding: x to ~√ε
    assert converged
    # Non-finite values are stepped away from: 50x − log x from x = 1, whose first full step lands at −48.
    with np.errstate(invalid="ignore"):
        value, x, converged = bfgs(lambda x: (50.0 * x[0] - np.log(x[0]), np.array([50.0 - 1.0 / x[0]])), [1.0])
    np.testing.assert_allclose(x, [0.02], rtol=1e-7)
    assert converged


def test_bfgs_reports_an_unconverged_run():
    _, x, converged = bfgs(_rosenbrock, [-1.2, 1.0], max_iterations=3)
    assert not converged and np.max(np.abs(_rosenbrock(x)[1])) > 1e-10
    value, _, converged = bfgs(lambda x: (np.nan, np.zeros(1)), [0.0])
    assert np.isnan(value) and not converged
