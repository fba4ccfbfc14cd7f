"""The model zoo the instruments are verified on: KerasHub and keras.applications models.

Each entry builds one model a user would bring, at a small configuration
(KerasHub: 2 layers, width 16, vocabulary 64, 8 tokens; keras.applications: the
published architectures at 32 × 32 inputs and 4 classes), with dropout off,
compiled with a tf_adaptive optimizer and its loss, and a batch of (x, y) to
train and probe on. `tests/analysis_tools/test_zoo.py` runs every instrument
on each, and `benchmarks/zoo_cost.py` times them.

    model, data = build("gpt2")                      # float32, compiled
    model, data = build("gpt2", dtype="float64")     # for finite-difference checks

The KerasHub task models take their inputs as a dict of arrays (token ids,
padding mask, segment ids), exactly as the model's `fit` takes them without a
preprocessor.
"""

import keras
import numpy as np

import tf_adaptive

VOCABULARY = 64
SEQUENCE = 8
IMAGE = 32
CLASSES = 4
BATCH = 4

TRANSFORMERS = ("gpt2", "bert", "llama", "gemma", "vit")
APPLICATIONS = ("resnet50", "mobilenet_v3_small", "efficientnet_v2_b0", "convnext_tiny")
MODELS = TRANSFORMERS + APPLICATIONS
# What the suite runs every instrument on: ResNet50 and ConvNeXtTiny (23-28 M parameters) would take
# about half of the suite's time budget; benchmarks/zoo_cost.py measures them whole.
# One keras.applications network in the suite: MobileNetV3Small holds the kinds of layer of the
# others (depthwise convolutions, batch normalization, squeeze-and-excitation, hard-swish, the
# residual addition); benchmarks/zoo_sweep.py checks each of them by finite differences (docs/ZOO_SWEEP.md).
# Gemma and ViT are left to the sweep too: Llama holds Gemma's kinds of layer (RMS norms, rotary
# embeddings computed in float32, a gated MLP, grouped-query attention), and the suite's DeiT and DINOv2
# (tests/analysis_tools/curvature/test_architectures.py) are vision transformers measured in fit.
# BERT is left to the sweep as well: GPT-2 holds its kinds of layer (learned position embeddings
# through the same slice, layer norms, a padding mask, dense attention), and its encoder's only
# addition, a segment embedding, is one more embedding lookup.
IN_SUITE = ("gpt2", "llama", "mobilenet_v3_small")

# The blocks a per-block measurement names in each model (a nested layer's name).
BLOCKS = {
    "gpt2": "transformer_layer_0",
    "bert": "transformer_layer_1",
    "llama": "transformer_layer_0",
    "gemma": "decoder_block_1",
    "vit": "transformer_block_1",
    "resnet50": "conv5_block3_3_conv",
    "mobilenet_v3_small": "logits",
    "efficientnet_v2_b0": "top_conv",
    "convnext_tiny": "convnext_tiny_stage_3_block_2_pointwise_conv_2",
}

# The name prefix of the layers of each keras.applications network's last block.
LAST_BLOCK = {
    "resnet50": "conv5_block3",
    "mobilenet_v3_small": "expanded_conv_10",
    "efficientnet_v2_b0": "block6h",
    "convnext_tiny": "convnext_tiny_stage_3_block_2",
}


def _tokens(rng):
    return rng.integers(1, VOCABULARY, (BATCH, SEQUENCE)).astype("int32")


def _causal_lm(kind, backbone, rng):
    import keras_hub

    task = getattr(keras_hub.models, kind)(backbone=backbone, preprocessor=None)
    tokens = _tokens(rng)
    x = {"token_ids": tokens, "padding_mask": np.ones_like(tokens, dtype=bool)}
    return task, (x, np.roll(tokens, -1, axis=1))


def _gpt2(dtype, rng):
    import keras_hub

    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=VOCABULARY,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=SEQUENCE,
        dropout=0.0,
        dtype=dtype,
    )
    return _causal_lm("GPT2CausalLM", backbone, rng)


def _llama(dtype, rng):
    import keras_hub

    backbone = keras_hub.models.LlamaBackbone(
        vocabulary_size=VOCABULARY,
        num_layers=2,
        num_query_heads=2,
        num_key_value_heads=1,
        hidden_dim=16,
        intermediate_dim=32,
        dropout=0.0,
        dtype=dtype,
    )
    return _causal_lm("LlamaCausalLM", backbone, rng)


def _gemma(dtype, rng):
    import keras_hub

    backbone = keras_hub.models.GemmaBackbone(
        vocabulary_size=VOCABULARY,
        num_layers=2,
        num_query_heads=2,
        num_key_value_heads=1,
        hidden_dim=16,
        intermediate_dim=32,
        head_dim=8,
        dropout=0.0,
        dtype=dtype,
    )
    return _causal_lm("GemmaCausalLM", backbone, rng)


def _bert(dtype, rng):
    import keras_hub

    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=VOCABULARY,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=SEQUENCE,
        dropout=0.0,
        dtype=dtype,
    )
    task = keras_hub.models.BertTextClassifier(backbone, num_classes=CLASSES, preprocessor=None, dropout=0.0)
    tokens = _tokens(rng)
    x = {"token_ids": tokens, "segment_ids": np.zeros_like(tokens), "padding_mask": np.ones_like(tokens, dtype=bool)}
    return task, (x, rng.integers(0, CLASSES, BATCH).astype("int32"))


def _images(rng):
    return rng.uniform(0.0, 1.0, (BATCH, IMAGE, IMAGE, 3)).astype("float32")


def _vit(dtype, rng):
    import keras_hub

    backbone = keras_hub.models.ViTBackbone(
        image_shape=(IMAGE, IMAGE, 3), patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32, dtype=dtype
    )
    task = keras_hub.models.ViTImageClassifier(backbone, num_classes=CLASSES, preprocessor=None)
    return task, (_images(rng), rng.integers(0, CLASSES, BATCH).astype("int32"))


def _application(constructor, **kwargs):
    def build(dtype, rng):
        previous = keras.config.floatx()
        keras.config.set_floatx(dtype)
        try:
            model = constructor(
                weights=None, input_shape=(IMAGE, IMAGE, 3), classes=CLASSES, classifier_activation=None, **kwargs
            )
        finally:
            keras.config.set_floatx(previous)
        return model, (_images(rng), rng.integers(0, CLASSES, BATCH).astype("int32"))

    return build


_BUILDERS = {
    "gpt2": _gpt2,
    "bert": _bert,
    "llama": _llama,
    "gemma": _gemma,
    "vit": _vit,
    "resnet50": _application(keras.applications.ResNet50),
    "mobilenet_v3_small": _application(keras.applications.MobileNetV3Small),
    "efficientnet_v2_b0": _application(keras.applications.EfficientNetV2B0),
    "convnext_tiny": _application(keras.applications.ConvNeXtTiny),
}


def build(name, dtype="float32", seed=0, optimizer=None, jit_compile=True, frozen_trunk=False):
    """(model compiled with `optimizer` (default `tf_adaptive.Adam(1e-3)`) and logits cross-entropy, (x, y)).

    The model is built (called once on x) and its weights are drawn from
    `seed`. With `frozen_trunk` (keras.applications only), every layer before
    the network's last block (`LAST_BLOCK`) is frozen (``trainable=False``).
    """
    if name not in _BUILDERS:
        raise ValueError(f"No zoo model {name!r}; the zoo holds {MODELS}.")
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    model, data = _BUILDERS[name](dtype, rng)
    for layer in model._flatten_layers(include_self=False):  # dropout off (the networks' top dropout)
        if isinstance(layer, keras.layers.Dropout):
            layer.rate = 0.0
    if frozen_trunk:
        if name not in LAST_BLOCK:
            raise ValueError(f"`frozen_trunk` is for the keras.applications networks {APPLICATIONS}.")
        names = [layer.name for layer in model.layers]
        first = next(i for i, layer_name in enumerate(names) if layer_name.startswith(LAST_BLOCK[name]))
        for layer in model.layers[:first]:
            layer.trainable = False
    model.compile(
        optimizer=optimizer or tf_adaptive.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype=dtype),
        jit_compile=jit_compile,
    )
    model(data[0])
    return model, data


def parameter_count(model):
    return int(sum(np.prod(v.shape) for v in model.trainable_variables))


def finite_difference_errors(operator, eigenvalue, vector, epsilons=(1e-2, 1e-3, 1e-4, 1e-6), expected=None):
    """{ε: ‖(g(θ+εv) − g(θ−εv)) / 2ε − λv‖ / ‖λv‖}: how well (λ, v) is an eigenpair of the true Hessian.

    With ``expected`` (the operator's own H v, say) the central difference is
    compared with it instead of λv: a check of the product alone, which a
    Ritz pair that has not converged (a large network in few Lanczos steps)
    does not blur.

    The central difference of first-order gradients (`operator.gradient()`)
    along the eigenvector, an independent check of the second-order
    product. The weights are restored afterwards. Take the best ε: in a
    network with kinks (ReLU, max pooling) a step of 1e-5 or more moves
    some unit across its kink, and the gradient jumps (KerasHub's DenseNet:
    errors 2.4 to 71 for ε = 1e-2 … 1e-5, then 5e-9 at 1e-6); a model that
    computes in float32 inside float64 (Llama's rotary embedding) is
    closest at the largest ε.
    """
    import numpy as np

    start = [v.numpy() for v in operator.variables]

    def gradient_at(step):
        for variable, value, direction in zip(operator.variables, start, operator.unflatten(step * vector)):
            variable.assign(value + direction.numpy())
        return operator.gradient()[0].numpy()

    expected = eigenvalue * np.asarray(vector) if expected is None else np.asarray(expected)
    errors = {}
    try:
        for epsilon in epsilons:
            difference = (gradient_at(epsilon) - gradient_at(-epsilon)) / (2.0 * epsilon)
            errors[epsilon] = float(np.linalg.norm(difference - expected) / np.linalg.norm(expected))
    finally:
        for variable, value in zip(operator.variables, start):
            variable.assign(value)
    return errors
