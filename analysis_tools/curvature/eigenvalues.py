"""Sharpness λ1(H) and preconditioned sharpness λ1(P⁻¹H), and the top eigenvalues of H and P⁻¹H.

Cohen et al., "Adaptive Gradient Methods at the Edge of Stability", 2022:
during full-batch training an adaptive method's preconditioned sharpness
λ1(P_t⁻¹ H_t) rises to, and then hovers at, the stability threshold of its
frozen-preconditioner form (38/η for Adam at β1 = 0.9; Fig. 1), while the raw
sharpness λ1(H_t) may keep rising (Fig. 8). The eigenvalues come from Lanczos
(`analysis_tools.curvature.lanczos`) on the Hessian of the loss over a fixed
probe set (`analysis_tools.curvature.hessian`), preconditioned as
P^{-1/2} H P^{-1/2}, which has the eigenvalues of P⁻¹H and is symmetric. P comes from
`analysis_tools.preconditioners.preconditioner_of`, so it works for
tf_adaptive's optimizers and Keras's built-ins alike.
"""

import tensorflow as tf

from analysis_tools._deprecation import renamed
from analysis_tools.curvature.hessian import operator_and_matvec, trainable_variables_for
from analysis_tools.preconditioners import preconditioner_of

__all__ = ["hessian_eigenvalues", "preconditioned_sharpness", "sharpness", "top_subspace_fraction"]


@renamed(tol="tolerance")
def hessian_eigenvalues(
    model,
    data=None,
    loss=None,
    preconditioner=None,
    k=1,
    max_iterations=40,
    tolerance=1e-3,
    return_vectors=False,
    initial_vector=None,
    seed=0,
    **operator_kwargs,
):
    """The top-k algebraic eigenvalues of H, or of P⁻¹H when `preconditioner` is given.

    Args:
        model: A built Keras model; its weights are read, never written. Or a
            `HessianOperator` built before (with `data` None and no operator
            options): its traced product, and its Lanczos loop of this
            size (`HessianOperator.solver`), are reused, not traced again.
        data: The probe set, (x, y) arrays or a `tf.data.Dataset` of (x, y).
        loss: Defaults to the model's compiled loss.
        preconditioner: Optional list of P tensors, one per trainable variable
            (e.g. from `analysis_tools.preconditioners.preconditioner_of`).
        k: How many eigenvalues.
        max_iterations: The most Hessian-vector products (Lanczos steps).
        tolerance: Stop when every top-k Ritz residual is below
            `tolerance` × |eigenvalue|.
        return_vectors: Also return the Ritz vectors (in the symmetric basis:
            for P⁻¹H, the right eigenvector is P^{-1/2} times it).
        initial_vector: Optional warm start (a flat vector of the parameter count).
        seed: Seed of the random start vector.
        **operator_kwargs: `batch_size`, `differentiation`, `mode`, `dropout`,
            `include_regularization`, `jit_compile`, `strategy`, `variables`
            (a layer or block: the eigenvalues of its diagonal block): see
            `analysis_tools.HessianOperator`; ``curvature=`` ("hessian", the
            default, "ggn", "fisher" with ``samples=`` and ``label_seed=``,
            or "empirical_fisher"; `analysis_tools.curvature.curvature_operator`).

    Returns:
        A `analysis_tools.curvature.LanczosResult` (eigenvalues descending,
        float64; eigenvectors or None; residuals; iterations).

    Raises:
        ValueError: As `analysis_tools.HessianOperator`: among others, a
            model without trainable variables, or a probe set that does not
            fit the model and its loss.
    """
    operator, matvec = operator_and_matvec(model, data, loss, preconditioner, **operator_kwargs)
    solver = operator.solver(False, max_iterations, k, return_vectors)
    # call=0: the random start of a new solver with this seed, whatever ran on this one before.
    return solver(matvec, initial_vector, tolerance=tolerance, criterion="residual", seed=seed, call=0)


def sharpness(model, data=None, loss=None, **kwargs):
    """λ1(H): the largest eigenvalue of the Hessian of the loss over `data` (a float).

    Raises:
        ValueError: As `hessian_eigenvalues`.
    """
    return float(hessian_eigenvalues(model, data, loss=loss, k=1, **kwargs).eigenvalues[0])


def preconditioned_sharpness(model, optimizer, data=None, loss=None, gradients=None, **kwargs):
    """λ1(P⁻¹H) with P the preconditioner of `optimizer`'s most recent update (a float).

    `optimizer` is a tf_adaptive optimizer or a supported Keras built-in;
    `gradients` is needed only where P depends on the last gradient (Keras's
    Adafactor).

    Raises:
        ValueError: As `hessian_eigenvalues`; a model without trainable
            variables is refused before the optimizer is read.
    """
    preconditioner = preconditioner_of(
        optimizer, trainable_variables_for(model, "its preconditioned Hessian"), gradients=gradients
    )
    result = hessian_eigenvalues(model, data, loss=loss, preconditioner=preconditioner, k=1, **kwargs)
    return float(result.eigenvalues[0])


def top_subspace_fraction(gradient, eigenvectors, preconditioner_scale=None):
    """The fraction of ‖P^{-1/2} g‖² in the span of the top eigenvectors (AEoS Fig. 18).

    Args:
        gradient: Flat gradient g.
        eigenvectors: [k, n] orthonormal eigenvectors of P^{-1/2} H P^{-1/2}
            (or of H when there is no preconditioner).
        preconditioner_scale: Flat P^{-1/2}, or None for P = I.

    Returns:
        (fraction in [0, 1], ‖P^{-1/2} g‖²) as floats.
    """
    g = tf.cast(gradient, tf.float64)
    if preconditioner_scale is not None:
        g = g * tf.cast(preconditioner_scale, tf.float64)
    total = float(tf.reduce_sum(tf.square(g)))
    if total == 0.0:
        return 0.0, 0.0
    coefficients = tf.linalg.matvec(tf.cast(eigenvectors, tf.float64), g)
    return float(tf.reduce_sum(tf.square(coefficients))) / total, total
