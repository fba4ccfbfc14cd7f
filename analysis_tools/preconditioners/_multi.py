"""The optimizers that wrap others: a LossScaleOptimizer is unwrapped, a MultiOptimizer read block by block.

A `keras.optimizers.MultiOptimizer` splits the variables into blocks
B_1, ..., B_K and updates block B_k with its own sub-optimizer k, so every
per-variable reading of a variable is that of its sub-optimizer (its slots,
its step count, its schedule), and P of the whole network is
block-diagonal, P = diag(P^(1), ..., P^(K)).
"""

import keras

from analysis_tools.preconditioners._common import _gradient_list, _not_built, _unknown_variable


def _unwrap(optimizer):
    while isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer = optimizer.inner_optimizer
    return optimizer


def _is_multi(optimizer):
    return isinstance(optimizer, keras.optimizers.MultiOptimizer)


def _blocks(multi, variables):
    """[(sub-optimizer k, the positions in `variables` of block B_k)] of a MultiOptimizer."""
    if not multi.built:
        raise _not_built(multi)
    blocks = {}
    for position, variable in enumerate(variables):
        index = multi._var_to_optimizer_idx.get(multi._var_key(variable))
        if index is None:
            raise _unknown_variable(variable, multi)
        blocks.setdefault(index, []).append(position)
    return [(multi.optimizers[index], positions) for index, positions in blocks.items()]


def _by_sub_optimizer(multi, variables, gradients, function):
    """`function(sub-optimizer, its variables, their gradients)` per block, in the caller's order."""
    variables = list(variables)
    gradients = _gradient_list(gradients, variables)
    results = [None] * len(variables)
    for optimizer, positions in _blocks(multi, variables):
        block_gradients = None if gradients is None else [gradients[i] for i in positions]
        values = function(optimizer, [variables[i] for i in positions], block_gradients)
        for position, value in zip(positions, values):
            results[position] = value
    return results


def _sub_optimizers(multi):
    """The sub-optimizers of a MultiOptimizer that update a variable (unbuilt: all it lists)."""
    if multi.built:
        indices = sorted(set(multi._var_to_optimizer_idx.values()))
        optimizers = [multi.optimizers[index] for index in indices]
    else:
        optimizers = list(multi.optimizers)
    if not optimizers:  # a callable optimizer map names them at build
        raise _not_built(multi)
    return optimizers


def _leaves(optimizer):
    """The optimizers that make the updates: `optimizer`, or every sub-optimizer a MultiOptimizer lists (unwrapped)."""
    optimizer = _unwrap(optimizer)
    return [_unwrap(sub) for sub in optimizer.optimizers] if _is_multi(optimizer) else [optimizer]
