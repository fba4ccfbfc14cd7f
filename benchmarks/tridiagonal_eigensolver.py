r"""The cost of Lanczos's small eigenproblem: dense `tf.linalg.eigh` against `tf.linalg.eigh_tridiagonal`.

`analysis_tools.Lanczos` takes the Ritz pairs of the m×m tridiagonal T_m
from a dense symmetric eigensolver on the CPU, once per iteration. This
script times that choice against TensorFlow's tridiagonal solver, inside
`tf.function`, for T_m of the sizes Lanczos reaches (m = 10, 40, 80).

    python benchmarks/tridiagonal_eigensolver.py
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf


@tf.function
def _dense(alpha, beta):
    t = tf.linalg.diag(alpha) + tf.linalg.diag(beta, k=1) + tf.linalg.diag(beta, k=-1)
    return tf.linalg.eigh(t)


@tf.function
def _tridiagonal(alpha, beta):
    return tf.linalg.eigh_tridiagonal(alpha, beta, eigvals_only=False)


def _time(function, alpha, beta, repeats=50):
    function(alpha, beta)  # trace
    start = time.perf_counter()
    for _ in range(repeats):
        result = function(alpha, beta)
    np.asarray(result[0])
    return (time.perf_counter() - start) / repeats * 1e3


def main():
    rng = np.random.default_rng(0)
    print(f"{'m':>4} {'dense eigh ms':>14} {'eigh_tridiagonal ms':>20} {'ratio':>7}")
    for m in (10, 40, 80):
        alpha = tf.constant(rng.normal(size=m))
        beta = tf.constant(np.abs(rng.normal(size=m - 1)))
        with tf.device("/device:CPU:0"):
            dense = _time(_dense, alpha, beta)
            tridiagonal = _time(_tridiagonal, alpha, beta)
        print(f"{m:>4} {dense:>14.3f} {tridiagonal:>20.3f} {tridiagonal / dense:>7.1f}")


if __name__ == "__main__":
    main()
