"""The blocks that per-block measurements split a model into, and how a selection of variables is named.

`layer_blocks(model)` is the one rule every per-block measurement uses
(``SharpnessCallback(blocks=True)``, `UpdateDistributionCallback`'s
default layers). It walks the model's layers with trainable weights, in the
model's order:

1. **Containers are opened.** A nested `keras.Model` (a Functional or
   Sequential sub-model, a KerasHub backbone) is opened into its own blocks,
   and so is a plain `Layer` that holds a *stack*: two or more sublayers of one
   composite class that is not Keras's own (DeiT's encoder, a `Layer` holding
   its ``transformer_block_i``). Any other layer is a leaf: a transformer
   block, an attention layer or a Dense layer is one block.
2. **A Functional is cut where its graph narrows to one tensor.** Its layers
   run in graph order; after a layer whose output is the only tensor
   computed from weights that later layers still read, everything before
   is done. The layers between two such cuts form one unit: a residual block
   (ResNet's ``conv2_block1``), a dense block's layer with its concatenation
   (DenseNet), an Inception module (``mixed0``), or, in a plain chain, one
   layer. Tensors computed from the inputs alone (a padding mask) do not
   count, so a transformer backbone is cut after each of its blocks.
3. **Units are named, then merged into stages by name.** A unit with one
   weighted layer takes its name; several take their names' longest common
   prefix (``conv2_block1_1_conv``, ``conv2_block1_2_conv`` → ``conv2_block1``)
   or, without one, the name of the unit's last layer (``mixed0``).
   Consecutive units whose layers' names start with the same stage token —
   the name's first part (split at ``_`` and ``/``) when it holds letters and
   digits, as ``conv2``, ``pool3``, ``block1a``, ``mixed7`` do — merge into
   one block named by it. Keras's automatic names (``conv2d_3``,
   ``batch_normalization_7``, ``dense_1``) carry no stage and never merge.

So a KerasHub GPT-2 gives its embeddings, each ``transformer_layer_i`` and
``layer_norm``; a keras.applications ResNet50 gives ``conv1`` … ``conv5`` and
``predictions``; DenseNet121 adds the transitions ``pool2`` … ``pool4``;
InceptionV3 gives its stem's layers, ``mixed0`` … ``mixed10`` and
``predictions``; a plain MLP gives each Dense layer. A layer met twice (a
tied embedding, used by a task and its backbone) belongs to the block where
it first appears. A block name that repeats is qualified by the path of
containers above it (``"encoder/dense"``).

Where the rule does not give the blocks you want, name them yourself:
``SharpnessCallback(blocks={"stem": ["conv1_conv", "conv1_bn"], ...})``
takes whatever `variables=` takes for each block.
"""

import re

import keras

__all__ = ["block_indices", "find_layer", "layer_blocks", "model_blocks"]

_TOKENS = re.compile(r"[_/]")


def _weighted(layer):
    """Whether `layer` (or a bare operation of a Functional's graph, which has none) has trainable variables."""
    return bool(getattr(layer, "trainable_variables", None))


def _children(container):
    """The direct sublayers of `container`, in its order."""
    if isinstance(container, keras.Model):
        return list(container.layers)
    return list(container._flatten_layers(include_self=False, recursive=False))


def _is_stack(layer):
    """Whether a plain `Layer` holds two or more sublayers of one composite class that is not Keras's own."""
    if isinstance(layer, keras.Model):
        return False
    counts = {}
    for child in _children(layer):
        kind = type(child)
        if (
            _weighted(child)
            and _children(child)
            and not kind.__module__.startswith("keras.")
            and not isinstance(child, keras.layers.MultiHeadAttention)
        ):
            counts[kind] = counts.get(kind, 0) + 1
    return any(count >= 2 for count in counts.values())


def _opens(layer):
    return isinstance(layer, keras.Model) or _is_stack(layer)


def _auto_named(layer):
    """Whether `layer` carries Keras's automatic name (its class in snake case, maybe with a ``_N`` suffix)."""
    base = re.sub(r"_\d+$", "", layer.name)
    return base == keras.src.utils.naming.to_snake_case(type(layer).__name__)


def _stage(layers):
    """The stage token of a unit: the first part of its first non-automatic name, if it holds letters and digits."""
    for layer in layers:
        if _weighted(layer) and not _auto_named(layer):
            token = _TOKENS.split(layer.name)[0]
            if re.search(r"[A-Za-z]", token) and re.search(r"\d", token):
                return token
            return None
    return None


def _common_prefix(names):
    parts = [_TOKENS.split(name) for name in names]
    prefix = []
    for tokens in zip(*parts):
        if len(set(tokens)) != 1:
            break
        prefix.append(tokens[0])
    return "_".join(prefix)


def _graph_units(functional):
    """The Functional's layers in graph order, cut where one weight-computed tensor is live (module docstring)."""
    depths = sorted(functional._nodes_by_depth, reverse=True)
    nodes = [node for depth in depths for node in functional._nodes_by_depth[depth]]
    position, weighted_tensor = {}, set()
    for index, node in enumerate(nodes):
        operation = node.operation
        computed = _weighted(operation) or any(id(t) in weighted_tensor for t in node.input_tensors)
        for tensor in node.output_tensors:
            position[id(tensor)] = index
            if computed:
                weighted_tensor.add(id(tensor))
    last_use = {tensor: index for tensor, index in position.items()}
    for index, node in enumerate(nodes):
        for tensor in node.input_tensors:
            if id(tensor) in last_use:
                last_use[id(tensor)] = max(last_use[id(tensor)], index)
    for tensor in keras.tree.flatten(functional.outputs):
        last_use[id(tensor)] = len(nodes)
    starts = [0] * (len(nodes) + 1)
    ends = [0] * (len(nodes) + 1)
    for tensor in weighted_tensor:
        starts[position[tensor]] += 1
        ends[last_use[tensor]] += 1
    units, current, live = [], [], 0
    for index, node in enumerate(nodes):
        current.append(node.operation)
        live += starts[index] - ends[index]
        if live == 1 or index == len(nodes) - 1:
            units.append(current)
            current = []
    return units


def _units(container):
    """The container's direct layers, grouped into units (one layer a unit outside a Functional)."""
    if hasattr(container, "_nodes_by_depth") and isinstance(container, keras.Model):
        return _graph_units(container)
    return [[child] for child in _children(container)]


def layer_blocks(model):
    """[(name, [layers])]: the blocks of `model` for per-block measurements, in the model's order.

    See the module docstring for the rule. Each block is a non-empty list of
    layers with trainable variables; no layer is in two blocks.
    """
    blocks, seen, names = [], set(), set()

    def add(name, prefix, layers):
        name = name if name not in names else f"{prefix}{name}"
        names.add(name)
        blocks.append((name, layers))

    def visit(container, prefix):
        pending = []  # leaf blocks of this container: (name, stage, layers), merged by stage at the end

        def flush():
            merged = []
            for name, stage, layers in pending:
                if merged and stage is not None and merged[-1][1] == stage:
                    merged[-1] = (stage, stage, merged[-1][2] + layers)
                else:
                    merged.append((name, stage, layers))
            for name, stage, layers in merged:
                add(stage if stage is not None and len(layers) > 1 else name, prefix, layers)
            pending.clear()

        for unit in _units(container):
            leaves = []
            for layer in unit:
                if id(layer) in seen or not _weighted(layer):
                    continue
                seen.add(id(layer))
                if _opens(layer):
                    flush()
                    visit(layer, f"{prefix}{layer.name}/")
                else:
                    leaves.append(layer)
            if not leaves:
                continue
            if len(leaves) == 1:
                name = leaves[0].name
            else:
                name = _common_prefix([layer.name for layer in leaves]) or unit[-1].name
            pending.append((name, _stage(leaves), leaves))
        flush()

    visit(model, "")
    return blocks


def model_blocks(model):
    """{block name: [trainable variables]}: `layer_blocks` as the variables each block holds.

    What ``SharpnessCallback(blocks=True)`` measures; edit it and pass it
    back as ``SharpnessCallback(blocks=...)`` to choose other blocks.
    """
    return {name: [v for layer in layers for v in layer.trainable_variables] for name, layers in layer_blocks(model)}


def find_layer(model, name):
    """The layer of `model` called `name`: a top-level layer, a nested one, or a ``"outer/inner"`` path.

    Nested layers (inside sub-models such as a KerasHub backbone) are found by
    name when the name is unique in the model, or by the path of layer names
    from the model down (``"gpt2_backbone/transformer_layer_0"``).

    Raises:
        ValueError: If no layer, or more than one, has that name.
    """
    if "/" in name:
        layer = model
        for part in name.split("/"):
            children = [
                child
                for child in getattr(layer, "_flatten_layers", lambda **_: [])(include_self=False, recursive=False)
                if child.name == part
            ]
            if len(children) != 1:
                break
            layer = children[0]
        else:
            return layer
    matches = {id(layer): layer for layer in model._flatten_layers(include_self=False) if layer.name == name}
    if len(matches) == 1:
        return next(iter(matches.values()))
    if matches:
        raise ValueError(
            f"`variables`: the model has {len(matches)} layers named {name!r}; name one by its "
            'path of layer names ("outer/inner").'
        )
    names = [block_name for block_name, _ in layer_blocks(model)]
    raise ValueError(f"`variables`: the model has no layer named {name!r}; its blocks (`layer_blocks`) are {names}.")


def _named(model, name):
    """The trainable variables of the layer or block `model` calls `name`, and a label for messages.

    A block of several layers takes precedence over a layer of the same name: a block is named after
    its unit's output layer (a T5 decoder's `decoder_output_dropout`), which may hold no weights.
    """
    blocks = None
    if "/" not in name:
        blocks = layer_blocks(model)
        for block_name, layers in blocks:
            if block_name == name and len(layers) > 1:
                return [v for layer in layers for v in layer.trainable_variables], f"block {name!r}"
    try:
        return list(find_layer(model, name).trainable_variables), f"layer {name!r}"
    except ValueError:
        for block_name, layers in blocks if blocks is not None else layer_blocks(model):
            if block_name == name:
                return [v for layer in layers for v in layer.trainable_variables], f"block {name!r}"
        raise


def block_indices(model, variables, selection, purpose):
    """Positions in `variables` (the model's trainable variables) of the block `selection` names.

    `selection` is None (every variable: returns None), or one or a list of:
    a layer name (a top-level or nested layer, or a path of names, as
    `find_layer` resolves it) or a block name of `layer_blocks`, a
    `keras.layers.Layer` (its trainable variables), or a trainable variable
    of the model. The positions come back sorted, in the model's order,
    without repeats.

    Raises:
        ValueError: naming the entry that is not a layer or block of the
            model, a layer without trainable variables, or a variable that is
            not one of the model's trainable variables; or an empty selection.
    """
    if selection is None:
        return None
    if isinstance(selection, (str, keras.layers.Layer, keras.Variable)) or hasattr(selection, "assign"):
        selection = [selection]
    selection = list(selection)
    if not selection:
        raise ValueError(f"`variables` is empty: name at least one layer or variable to measure {purpose} over.")
    position = {id(v): i for i, v in enumerate(variables)}
    chosen = set()
    for entry in selection:
        if isinstance(entry, str):
            entries, label = _named(model, entry)
        elif isinstance(entry, keras.layers.Layer):
            entries = list(entry.trainable_variables)
            label = f"layer {entry.name!r}"
        else:
            entries = [entry]
            label = f"variable {getattr(entry, 'path', entry)!r}"
        if not entries:
            raise ValueError(f"`variables`: {label} has no trainable variables.")
        for variable in entries:
            if id(variable) not in position:
                raise ValueError(
                    f"`variables`: {label} is not among the model's trainable variables "
                    f"({getattr(variable, 'path', variable)!r})."
                )
            chosen.add(position[id(variable)])
    return sorted(chosen)
