"""The catalog of the model sweep: every KerasHub and keras.applications architecture, built small.

`catalog()` names one builder per architecture class the installed KerasHub
exports (every `keras_hub.models` backbone and task class) and per
`keras.applications` constructor; `build(name)` returns the model a user would
bring to `model.fit`, at the zoo's small configuration (`zoo.py`): vocabulary
64, 8 tokens, 32 x 32 x 3 images (or the smallest an architecture accepts),
4 classes, batch 4, width 16, 1-2 layers, 2 heads, dropout off, random weights
from constructor arguments only (no presets, no tokenizer files).

    for name in catalog():
        try:
            model, (x, y), loss = build(name)             # dtype="float64" too
        except Unbuildable as reason:
            ...

Every model has ONE output tensor and comes with the loss it trains on:

* CausalLM / Seq2SeqLM / AudioToText: next-token sparse cross-entropy from the
  logits, y = the (decoder) tokens rolled by one.
* TextClassifier / ImageClassifier: sparse cross-entropy from logits, 4 classes.
* MaskedLM: the `mask_positions` input (2 per example) and the tokens there.
* ImageSegmenter with class logits: per-pixel categorical cross-entropy on
  one-hot pixels (the task's own default loss and `CategoricalAccuracy` metric,
  which a recompile with only a loss keeps).
* DepthEstimator (its "depths" output), TextEmbedder: MSE against random targets.
* A task with several outputs (object detectors, SAM): wrapped into a
  Functional `keras.Model` whose output is every float output flattened and
  concatenated, MSE against random targets (their own `compute_loss` needs
  labelled boxes or masks; this keeps every head in the gradient).
* A backbone: wrapped into a Functional `keras.Model` with the same inputs, the
  backbone a nested layer (its sublayers stay visible); every float feature
  output (sequence / pooled / pyramid levels ..., not attention masks) is
  averaged over its non-batch, non-channel axes, concatenated and fed to
  `Dense(4)`, sparse cross-entropy from logits. Contrastive image-text backbones
  (CLIP, SigLIP, MetaCLIP2) train instead on their (batch, batch)
  `vision_logits` with `ContrastiveCrossEntropy` (CLIP's loss: image i's class
  is text i; y = arange(batch), the targets follow any split of the batch).

`build(name, dtype="float64")` passes dtype= to the KerasHub constructors and
sets `keras.config.floatx` while building, which keras.applications and the
KerasHub layers that ignore dtype= (DenseNet, EfficientNet, MiT/SegFormer, VGG,
ViTDet, DeepLabV3, Flux, SmolLM3, EdRec's LM head) take their dtype from.

Excluded from `catalog()` (documented, not swept):

* The abstract bases, which hold no architecture: `Backbone`,
  `FeaturePyramidBackbone`, and the task bases without a `backbone_cls`
  (`Task`, `CausalLM`, `Seq2SeqLM`, `MaskedLM`, `TextClassifier`/`Classifier`,
  `ImageClassifier`, `ImageSegmenter`, `ImageObjectDetector`/`ObjectDetector`,
  `DepthEstimator`, `TextEmbedder`, `TextToImage`, `ImageToImage`, `Inpaint`).
* Aliases: a second exported name of the same class (`AlbertClassifier` is
  `AlbertTextClassifier`, `Qwen2Backbone` is `QwenBackbone`,
  `SmolLMBackbone` is `SmolLM3Backbone`, `ESM2Backbone` is `ESMBackbone`, ...);
  the name kept is the class's own `__name__`.

The configurations follow KerasHub's own unit tests where an architecture needs
more than the shared text/vision sizes; multimodal backbones that take an
optional vision / audio encoder (Gemma3, Gemma3n, Gemma4, Qwen3.5) are built
text-only, the smallest version. Classes that cannot be built small or trained
with fit(x, y) here raise `Unbuildable` with the reason (`_UNBUILDABLE`,
`_UNBUILDABLE_FLOAT64`, `_APPLICATION_PARAMETERS`): generate-only pipelines,
KerasHub defects that break the forward pass or fit, networks over 30 M
parameters at their smallest input.
"""

import functools
import inspect

import keras
import numpy as np

VOCABULARY = 64
SEQUENCE = 8
IMAGE = 32
CLASSES = 4
BATCH = 4
WIDTH = 16
MAX_PARAMETERS = 30_000_000


class Unbuildable(Exception):
    """Raised by a builder for an architecture that cannot be built small here; str() is the reason."""


# ---------------------------------------------------------------------------------------------------------
# Small constructor arguments of every KerasHub backbone. A value is a dict of keyword arguments, or a
# function of the dtype returning one (backbones made of sub-models, which must share the dtype).

_TEXT = dict(vocabulary_size=VOCABULARY, num_layers=2, num_heads=2, hidden_dim=WIDTH, intermediate_dim=2 * WIDTH)
_TEXT_DROPOUT = dict(_TEXT, dropout=0.0)
# T5Gemma and T5Gemma2 take the same encoder-decoder arguments.
_T5GEMMA = dict(
    vocabulary_size=VOCABULARY,
    encoder_hidden_dim=WIDTH,
    encoder_intermediate_dim=2 * WIDTH,
    encoder_num_layers=2,
    encoder_num_attention_heads=2,
    encoder_num_key_value_heads=1,
    encoder_head_dim=8,
    encoder_layer_types=["sliding_attention", "full_attention"],
    decoder_hidden_dim=WIDTH,
    decoder_intermediate_dim=2 * WIDTH,
    decoder_num_layers=2,
    decoder_num_attention_heads=2,
    decoder_num_key_value_heads=1,
    decoder_head_dim=8,
    decoder_layer_types=["sliding_attention", "full_attention"],
    dropout_rate=0.0,
    attention_dropout=0.0,
    sliding_window=4,
    cross_attention_hidden_size=WIDTH,
)
_GQA = dict(
    vocabulary_size=VOCABULARY,
    num_layers=2,
    num_query_heads=2,
    num_key_value_heads=1,
    hidden_dim=WIDTH,
    intermediate_dim=2 * WIDTH,
)


def _resnet(dtype, stages=2, image_shape=(None, None, 3)):
    import keras_hub

    filters = [64, 16, 16, 16, 16][:stages]  # ResNetBackbone requires 64 first
    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=filters,
        stackwise_num_blocks=[1] * stages,
        stackwise_num_strides=[1] + [2] * (stages - 1),
        block_type="basic_block",
        image_shape=image_shape,
        dtype=dtype,
    )


_MIT = dict(
    layerwise_depths=[1, 1],
    num_layers=2,
    hidden_dims=[8, WIDTH],
    layerwise_num_heads=[1, 2],
    layerwise_sr_ratios=[4, 2],
    max_drop_path_rate=0.0,
    layerwise_patch_sizes=[7, 3],
    layerwise_strides=[4, 2],
    image_shape=(IMAGE, IMAGE, 3),
)
_DINOV2 = dict(
    patch_size=8,
    num_layers=2,
    hidden_dim=WIDTH,
    num_heads=2,
    intermediate_dim=2 * WIDTH,
    image_shape=(IMAGE, IMAGE, 3),
    position_embedding_shape=(IMAGE, IMAGE, 3),
)
_HGNETV2 = dict(
    stem_channels=[3, 8, 8],
    stackwise_stage_filters=[[8, 8, WIDTH, 1, 1, 3], [WIDTH, 8, 32, 1, 1, 3]],
    apply_downsample=[False, True],
    use_lightweight_conv_block=[False, False],
    depths=[1, 1],
    hidden_sizes=[WIDTH, 32],
    embedding_size=8,
    use_learnable_affine_block=True,
    hidden_act="relu",
    image_shape=(IMAGE, IMAGE, 3),
)
_VIT = dict(image_shape=(IMAGE, IMAGE, 3), patch_size=8, num_layers=2, num_heads=2, hidden_dim=WIDTH, mlp_dim=2 * WIDTH)


def _clip_like(family, projection=True):
    def kwargs(dtype):
        import keras_hub

        models = keras_hub.models
        vision = getattr(models, f"{family}VisionEncoder")(
            patch_size=8,
            hidden_dim=WIDTH,
            num_layers=2,
            num_heads=2,
            intermediate_dim=2 * WIDTH,
            image_shape=(IMAGE, IMAGE, 3),
            dtype=dtype,
        )
        text = getattr(models, f"{family}TextEncoder")(
            vocabulary_size=VOCABULARY,
            embedding_dim=WIDTH,
            hidden_dim=WIDTH,
            num_layers=2,
            num_heads=2,
            intermediate_dim=2 * WIDTH,
            max_sequence_length=SEQUENCE,
            dtype=dtype,
        )
        return dict(vision_encoder=vision, text_encoder=text, **({"projection_dim": WIDTH} if projection else {}))

    return kwargs


_BACKBONES = {
    # --- text encoders
    "AlbertBackbone": dict(_TEXT_DROPOUT, embedding_dim=8, max_sequence_length=SEQUENCE),
    "BertBackbone": dict(_TEXT_DROPOUT, max_sequence_length=SEQUENCE),
    "DebertaV3Backbone": dict(_TEXT_DROPOUT, max_sequence_length=SEQUENCE, bucket_size=SEQUENCE),
    "DistilBertBackbone": dict(_TEXT_DROPOUT, max_sequence_length=SEQUENCE),
    "ESMBackbone": dict(_TEXT_DROPOUT, max_sequence_length=SEQUENCE),
    "ElectraBackbone": dict(
        vocab_size=VOCABULARY,
        num_layers=2,
        num_heads=2,
        hidden_dim=WIDTH,
        embedding_dim=WIDTH,
        intermediate_dim=2 * WIDTH,
        dropout=0.0,
        max_sequence_length=SEQUENCE,
    ),
    "FNetBackbone": dict(
        vocabulary_size=VOCABULARY,
        num_layers=2,
        hidden_dim=WIDTH,
        intermediate_dim=2 * WIDTH,
        dropout=0.0,
        max_sequence_length=SEQUENCE,
    ),
    "RobertaBackbone": dict(_TEXT_DROPOUT, max_sequence_length=SEQUENCE),
    "XLMRobertaBackbone": dict(_TEXT_DROPOUT, max_sequence_length=SEQUENCE),
    "RoformerV2Backbone": dict(_TEXT_DROPOUT, head_size=8),
    "XLNetBackbone": dict(_TEXT_DROPOUT),
    # --- decoders
    "GPT2Backbone": dict(_TEXT_DROPOUT, max_sequence_length=SEQUENCE),
    "BloomBackbone": dict(_TEXT_DROPOUT),
    "FalconBackbone": dict(
        vocabulary_size=VOCABULARY,
        num_layers=2,
        num_attention_heads=2,
        hidden_dim=WIDTH,
        intermediate_dim=2 * WIDTH,
        attention_dropout_rate=0.0,
        feedforward_dropout_rate=0.0,
    ),
    "GPTNeoXBackbone": dict(_TEXT_DROPOUT, max_sequence_length=SEQUENCE),
    "OPTBackbone": dict(_TEXT_DROPOUT, max_sequence_length=SEQUENCE),
    "GemmaBackbone": dict(_GQA, head_dim=8, dropout=0.0),
    "Gemma3Backbone": dict(_GQA, head_dim=8, image_size=IMAGE, dropout=0.0),
    "Gemma3nBackbone": dict(
        text_vocab_size=VOCABULARY,
        text_hidden_size=WIDTH,
        num_hidden_layers=2,
        pad_token_id=0,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        intermediate_size=[2 * WIDTH, 2 * WIDTH],
        hidden_activation="gelu_approximate",
        layer_types=["sliding_attention", "full_attention"],
        sliding_window=4,
        rope_theta=10000.0,
        max_position_embeddings=SEQUENCE,
        vocab_size_per_layer_input=VOCABULARY,
        hidden_size_per_layer_input=2,
        altup_num_inputs=2,
        laurel_rank=1,
        attention_dropout=0.0,
    ),
    "Gemma4Backbone": dict(_GQA, head_dim=8, image_size=IMAGE, sliding_window_size=4, dropout=0.0),
    "GptOssBackbone": dict(_GQA, num_experts=4, top_k=2, sliding_window=4, head_dim=8, dropout=0.0),
    "LlamaBackbone": dict(_GQA, dropout=0.0),
    "Llama3Backbone": dict(_GQA, dropout=0.0),
    "MistralBackbone": dict(_GQA, sliding_window=4, dropout=0.0),
    "MixtralBackbone": dict(_GQA, num_experts=4, top_k=2, sliding_window=4, dropout=0.0),
    "Phi3Backbone": dict(_GQA, dropout=0.0),
    "QwenBackbone": dict(_GQA, dropout=0.0),
    "Qwen3Backbone": dict(_GQA, head_dim=8, dropout=0.0),
    "QwenMoeBackbone": dict(
        _GQA, moe_intermediate_dim=WIDTH, shared_expert_intermediate_dim=2 * WIDTH, num_experts=4, top_k=2, dropout=0.0
    ),
    "Qwen3MoeBackbone": dict(_GQA, moe_intermediate_dim=WIDTH, num_experts=4, top_k=2, head_dim=8, dropout=0.0),
    "Qwen3_5Backbone": dict(
        _GQA,
        head_dim=8,
        layer_types=["linear_attention", "full_attention"],
        linear_num_key_heads=2,
        linear_num_value_heads=2,
        linear_key_head_dim=8,
        linear_value_head_dim=8,
        linear_conv_kernel_dim=4,
        dropout=0.0,
    ),
    "Qwen3_5MoeBackbone": dict(
        {k: v for k, v in _GQA.items() if k != "intermediate_dim"},
        head_dim=8,
        moe_intermediate_dim=WIDTH,
        shared_expert_intermediate_size=WIDTH,
        num_experts=4,
        top_k=2,
        layer_types=["linear_attention", "full_attention"],
        linear_num_key_heads=2,
        linear_num_value_heads=2,
        linear_key_head_dim=8,
        linear_value_head_dim=8,
        linear_conv_kernel_dim=4,
        dropout=0.0,
    ),
    "RWKV7Backbone": dict(
        vocabulary_size=VOCABULARY,
        hidden_size=WIDTH,
        head_size=8,
        num_layers=2,
        intermediate_dim=2 * WIDTH,
        gate_lora=8,
        mv_lora=8,
        aaa_lora=8,
        decay_lora=8,
        dropout_rate=0.0,
    ),
    "SmolLM3Backbone": dict(
        vocabulary_size=VOCABULARY,
        hidden_dim=WIDTH,
        intermediate_dim=2 * WIDTH,
        num_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        attention_bias=False,
        attention_dropout=0.0,
        rope_layer_enabled_list=[True, True],
        layer_types=["attention", "attention"],
        mlp_bias=False,
        layer_norm_epsilon=1e-5,
        max_position_embeddings=SEQUENCE,
        rope_theta=10000.0,
        partial_rotary_factor=1.0,
    ),
    # --- encoder-decoders
    "BartBackbone": dict(_TEXT_DROPOUT, max_sequence_length=SEQUENCE),
    "T5Backbone": dict(_TEXT_DROPOUT),
    "EdRecBackbone": dict(
        vocab_size=VOCABULARY,
        num_layers_enc=2,
        num_layers_dec=2,
        hidden_dim=WIDTH,
        intermediate_dim=2 * WIDTH,
        num_heads=2,
        dropout=0.0,
    ),
    "T5GemmaBackbone": _T5GEMMA,
    "MoonshineBackbone": dict(
        vocabulary_size=VOCABULARY,
        filter_dim=WIDTH,
        encoder_num_layers=1,
        decoder_num_layers=1,
        hidden_dim=WIDTH,
        intermediate_dim=2 * WIDTH,
        encoder_num_heads=2,
        decoder_num_heads=2,
        max_position_embeddings=64,
        dropout=0.0,
        attention_dropout=0.0,
    ),
    "T5Gemma2Backbone": _T5GEMMA,
    "WhisperBackbone": dict(
        _TEXT_DROPOUT, num_mels=8, max_encoder_sequence_length=2 * SEQUENCE, max_decoder_sequence_length=SEQUENCE
    ),
    # --- multimodal
    "CLIPBackbone": _clip_like("CLIP"),
    "MetaCLIP2Backbone": _clip_like("MetaCLIP2"),
    "SigLIPBackbone": _clip_like("SigLIP", projection=False),
    "CLIPVisionEncoder": dict(
        patch_size=8,
        hidden_dim=WIDTH,
        num_layers=2,
        num_heads=2,
        intermediate_dim=2 * WIDTH,
        image_shape=(IMAGE, IMAGE, 3),
    ),
    "MetaCLIP2VisionEncoder": dict(
        patch_size=8,
        hidden_dim=WIDTH,
        num_layers=2,
        num_heads=2,
        intermediate_dim=2 * WIDTH,
        image_shape=(IMAGE, IMAGE, 3),
    ),
    "SigLIPVisionEncoder": dict(
        patch_size=8,
        hidden_dim=WIDTH,
        num_layers=2,
        num_heads=2,
        intermediate_dim=2 * WIDTH,
        image_shape=(IMAGE, IMAGE, 3),
    ),
    "CLIPTextEncoder": dict(
        vocabulary_size=VOCABULARY,
        embedding_dim=WIDTH,
        hidden_dim=WIDTH,
        num_layers=2,
        num_heads=2,
        intermediate_dim=2 * WIDTH,
        max_sequence_length=SEQUENCE,
    ),
    "MetaCLIP2TextEncoder": dict(
        vocabulary_size=VOCABULARY,
        embedding_dim=WIDTH,
        hidden_dim=WIDTH,
        num_layers=2,
        num_heads=2,
        intermediate_dim=2 * WIDTH,
        max_sequence_length=SEQUENCE,
    ),
    "SigLIPTextEncoder": dict(
        vocabulary_size=VOCABULARY,
        embedding_dim=WIDTH,
        hidden_dim=WIDTH,
        num_layers=2,
        num_heads=2,
        intermediate_dim=2 * WIDTH,
        max_sequence_length=SEQUENCE,
    ),
    "PaliGemmaBackbone": dict(
        _GQA,
        head_dim=8,
        image_size=IMAGE,
        vit_patch_size=8,
        vit_num_heads=2,
        vit_hidden_dim=WIDTH,
        vit_num_layers=2,
        vit_intermediate_dim=2 * WIDTH,
        dropout=0.0,
    ),
    # --- vision
    "CSPNetBackbone": dict(
        stem_filters=8,
        stem_kernel_size=3,
        stem_strides=1,
        stackwise_depth=[1, 1],
        stackwise_strides=2,
        stackwise_num_filters=[8, WIDTH],
        block_type="dark_block",
        stage_type="csp",
        down_growth=True,
        bottle_ratio=(0.5, 1.0),
        block_ratio=(1.0, 0.5),
        expand_ratio=(2.0, 1.0),
        stem_padding="same",
        image_shape=(IMAGE, IMAGE, 3),
    ),
    "DeiTBackbone": dict(
        image_shape=(IMAGE, IMAGE, 3),
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=WIDTH,
        intermediate_dim=2 * WIDTH,
    ),
    "DenseNetBackbone": dict(stackwise_num_repeats=[1, 1], growth_rate=4, image_shape=(IMAGE, IMAGE, 3)),
    "DINOV2Backbone": dict(_DINOV2),
    "DINOV3Backbone": dict(
        patch_size=8,
        num_layers=2,
        hidden_dim=WIDTH,
        num_heads=2,
        intermediate_dim=2 * WIDTH,
        image_shape=(IMAGE, IMAGE, 3),
    ),
    "EfficientNetBackbone": dict(
        stackwise_width_coefficients=[1.0, 1.0],
        stackwise_depth_coefficients=[1.0, 1.0],
        stackwise_kernel_sizes=[3, 3],
        stackwise_num_repeats=[1, 1],
        stackwise_input_filters=[8, 8],
        stackwise_output_filters=[8, WIDTH],
        stackwise_expansion_ratios=[1, 4],
        stackwise_squeeze_and_excite_ratios=[0.0, 0.25],
        stackwise_strides=[1, 2],
        stackwise_block_types=["fused", "unfused"],
        stackwise_force_input_filters=[0, 0],
        stackwise_nores_option=[False, False],
        dropout=0.0,
        num_features=32,
        input_shape=(IMAGE, IMAGE, 3),
    ),
    "HGNetV2Backbone": dict(_HGNETV2),
    "MiTBackbone": dict(_MIT),
    "MobileNetBackbone": dict(
        stackwise_expansion=[[16, 24], [32]],
        stackwise_num_blocks=[2, 1],
        stackwise_num_filters=[[8, 8], [WIDTH]],
        stackwise_kernel_size=[[3, 3], [5]],
        stackwise_num_strides=[[2, 1], [2]],
        stackwise_se_ratio=[[None, None], [0.25]],
        stackwise_activation=[["relu", "relu"], ["hard_swish"], ["hard_swish"]],  # one more: the last layer's
        stackwise_padding=[[1, 1], [2]],
        output_num_filters=32,
        input_activation="hard_swish",
        output_activation="hard_swish",
        input_num_filters=8,
        image_shape=(IMAGE, IMAGE, 3),
        depthwise_filters=8,
        depthwise_stride=2,
        depthwise_residual=False,
        squeeze_and_excite=0.5,
        last_layer_filter=32,
    ),
    "MobileNetV5Backbone": dict(
        stackwise_block_types=[["er"], ["uir"]],
        stackwise_num_blocks=[1, 1],
        stackwise_num_filters=[[8], [WIDTH]],
        stackwise_strides=[[2], [2]],
        stackwise_act_layers=[["relu"], ["relu"]],
        stackwise_exp_ratios=[[4.0], [4.0]],
        stackwise_se_ratios=[[0.0], [0.0]],
        stackwise_dw_kernel_sizes=[[0], [3]],
        stackwise_dw_start_kernel_sizes=[[0], [0]],
        stackwise_dw_end_kernel_sizes=[[0], [0]],
        stackwise_exp_kernel_sizes=[[3], [0]],
        stackwise_pw_kernel_sizes=[[1], [0]],
        stackwise_num_heads=[[0], [0]],
        stackwise_key_dims=[[0], [0]],
        stackwise_value_dims=[[0], [0]],
        stackwise_kv_strides=[[0], [0]],
        stackwise_use_cpe=[[False], [False]],
        stem_size=8,
        num_features=32,
        use_msfa=False,
        image_shape=(IMAGE, IMAGE, 3),
    ),
    "ResNetBackbone": lambda dtype: _resnet(dtype, image_shape=(IMAGE, IMAGE, 3)).get_config(),
    "SwinTransformerBackbone": dict(
        image_shape=(IMAGE, IMAGE, 3),
        embed_dim=WIDTH,
        depths=(1, 1),
        num_heads=(2, 2),
        window_size=4,
        patch_size=4,
        drop_path=0.0,
    ),
    "VGGBackbone": dict(stackwise_num_repeats=[1, 1], stackwise_num_filters=[8, WIDTH], image_shape=(IMAGE, IMAGE, 3)),
    "ViTBackbone": dict(_VIT),
    "ViTDetBackbone": dict(
        hidden_size=WIDTH,
        num_layers=2,
        intermediate_dim=2 * WIDTH,
        num_heads=2,
        global_attention_layer_indices=[1],
        image_shape=(IMAGE, IMAGE, 3),
        patch_size=8,
        num_output_channels=8,
        window_size=2,
    ),
    "XceptionBackbone": dict(
        stackwise_conv_filters=[[8, WIDTH], [WIDTH, WIDTH]],
        stackwise_pooling=[False, True],
        image_shape=(IMAGE, IMAGE, 3),
    ),
    "VideoPrismBackbone": dict(
        num_frames=2,
        patch_size=8,
        hidden_dim=WIDTH,
        intermediate_dim=2 * WIDTH,
        num_heads=2,
        num_spatial_layers=1,
        num_temporal_layers=1,
        num_auxiliary_layers=1,
        image_shape=(IMAGE, IMAGE, 3),
    ),
    # --- backbones made of an image encoder and a head
    "BASNetBackbone": lambda dtype: dict(
        image_encoder=_resnet(dtype, stages=4), num_classes=1, image_shape=(IMAGE, IMAGE, 3), projection_filters=64
    ),  # feeds ResNet's 64
    "DeepLabV3Backbone": lambda dtype: dict(
        image_encoder=_resnet(dtype, stages=3),
        low_level_feature_key="P2",
        spatial_pyramid_pooling_key="P4",
        upsampling_size=4,
        dilation_rates=[2, 4],
        projection_filters=8,
        image_shape=(IMAGE, IMAGE, 3),
    ),
    "RetinaNetBackbone": lambda dtype: dict(
        image_encoder=_resnet(dtype, stages=4), min_level=3, max_level=5, use_p5=True, image_shape=(IMAGE, IMAGE, 3)
    ),
    "SegFormerBackbone": lambda dtype: dict(image_encoder=_sub("MiTBackbone", dtype), projection_filters=8),
    "DepthAnythingBackbone": lambda dtype: dict(
        image_encoder=_sub("DINOV2Backbone", dtype, num_layers=4, patch_size=4, apply_layernorm=True),
        reassemble_factors=[4, 2, 1, 0.5],
        neck_hidden_dims=[8, 8, WIDTH, WIDTH],
        fusion_hidden_dim=WIDTH,
        head_hidden_dim=8,
        head_in_index=-1,
        feature_keys=["stage1", "stage2", "stage3", "stage4"],
    ),
    "PARSeqBackbone": lambda dtype: dict(
        image_encoder=_sub("ViTBackbone", dtype, use_class_token=False),
        vocabulary_size=VOCABULARY,
        max_label_length=SEQUENCE,
        decoder_hidden_dim=WIDTH,
        num_decoder_layers=1,
        num_decoder_heads=2,
        decoder_mlp_dim=2 * WIDTH,
        dropout_rate=0.0,
        attention_dropout=0.0,
    ),
    "DFineBackbone": lambda dtype: dict(
        backbone=_sub("HGNetV2Backbone", dtype, image_shape=(None, None, 3), out_features=["stage1", "stage2"]),
        decoder_in_channels=[WIDTH, WIDTH],
        encoder_hidden_dim=WIDTH,
        num_labels=CLASSES,
        num_denoising=0,
        hidden_dim=WIDTH,
        learn_initial_query=False,
        num_queries=8,
        anchor_image_size=(IMAGE, IMAGE),
        feat_strides=[4, 8],
        num_feature_levels=2,
        encoder_in_channels=[WIDTH, 32],
        encode_proj_layers=[1],
        num_attention_heads=2,
        encoder_ffn_dim=2 * WIDTH,
        num_encoder_layers=1,
        hidden_expansion=0.5,
        depth_multiplier=0.5,
        eval_idx=-1,
        num_decoder_layers=2,
        decoder_attention_heads=2,
        decoder_ffn_dim=2 * WIDTH,
        decoder_n_points=[2, 2],
        lqe_hidden_dim=8,
        num_lqe_layers=2,
        out_features=["stage1", "stage2"],
        image_shape=(IMAGE, IMAGE, 3),
        seed=0,
    ),
    "BLIP2Backbone": lambda dtype: _blip2(dtype, "opt"),
    "SAMBackbone": lambda dtype: _sam(dtype),
    "SAM3PromptableConceptBackbone": lambda dtype: _sam3(dtype),
    "FluxBackbone": dict(
        input_channels=8,
        hidden_size=WIDTH,
        mlp_ratio=2.0,
        num_heads=2,
        depth=1,
        depth_single_blocks=1,
        axes_dim=[2, 2, 4],
        theta=10_000,
        use_bias=True,
        guidance_embed=True,
        image_shape=(SEQUENCE, 8),
        text_shape=(SEQUENCE, WIDTH),
        image_ids_shape=(SEQUENCE, 3),
        text_ids_shape=(SEQUENCE, 3),
        y_shape=(WIDTH,),
    ),
    "StableDiffusion3Backbone": lambda dtype: _sd3(dtype),
}


def _blip2(dtype, language):
    from keras_hub.src.models.blip2.blip2_custom_opt import BLIP2CustomOPT
    from keras_hub.src.models.blip2.blip2_flan_t5_lm import BLIP2FlanT5
    from keras_hub.src.models.blip2.blip2_qformer import BLIP2QFormer
    from keras_hub.src.models.blip2.blip2_vision_encoder import BLIP2VisionEncoder

    vision = BLIP2VisionEncoder(
        image_size=IMAGE,
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=WIDTH,
        intermediate_dim=2 * WIDTH,
        use_patch_bias=True,
        use_class_token=True,
        use_mha_bias=True,
        use_mlp_bias=True,
        dropout_rate=0.0,
        layer_norm_epsilon=1e-6,
        initializer_range=0.02,
        dtype=dtype,
    )
    qformer = BLIP2QFormer(
        num_query_tokens=2,
        num_layers=2,
        num_heads=2,
        hidden_dim=WIDTH,
        intermediate_dim=2 * WIDTH,
        vision_dim=WIDTH,
        cross_attention_frequency=1,
        dropout=0.0,
        layer_norm_epsilon=1e-6,
        dtype=dtype,
    )
    if language == "opt":
        lm = BLIP2CustomOPT(
            vocabulary_size=VOCABULARY,
            num_layers=2,
            num_heads=2,
            hidden_dim=WIDTH,
            intermediate_dim=2 * WIDTH,
            num_query_tokens=2,
            qformer_hidden_dim=WIDTH,
            max_sequence_length=2 * SEQUENCE,
            dropout=0.0,
            dtype=dtype,
        )
    else:
        lm = BLIP2FlanT5(
            vocabulary_size=VOCABULARY,
            num_layers=2,
            num_heads=2,
            hidden_dim=WIDTH,
            intermediate_dim=2 * WIDTH,
            num_query_tokens=2,
            qformer_hidden_dim=WIDTH,
            dropout=0.0,
            dtype=dtype,
        )
    return dict(vision_encoder=vision, qformer=qformer, language_model=lm)


def _sam(dtype):
    import keras_hub

    encoder = _sub("ViTDetBackbone", dtype, image_shape=(IMAGE, IMAGE, 3))
    grid = IMAGE // 8
    prompt = keras_hub.layers.SAMPromptEncoder(
        hidden_size=8,
        image_embedding_size=(grid, grid),
        input_image_size=(IMAGE, IMAGE),
        mask_in_channels=8,
        dtype=dtype,
    )
    decoder = keras_hub.layers.SAMMaskDecoder(
        num_layers=2,
        hidden_size=8,
        intermediate_dim=2 * WIDTH,
        num_heads=2,
        embedding_dim=8,
        num_multimask_outputs=3,
        iou_head_depth=2,
        iou_head_hidden_dim=8,
        dtype=dtype,
    )
    return dict(image_encoder=encoder, prompt_encoder=prompt, mask_decoder=decoder)


def _sam3(dtype):
    import keras_hub

    layers = keras_hub.layers
    size = 28  # two 14-pixel patches a side: the smallest grid its FPN (scales 4, 2, 1, 0.5) accepts
    common = dict(hidden_dim=WIDTH, intermediate_dim=2 * WIDTH, num_heads=2, dtype=dtype)
    return dict(
        vision_encoder=layers.SAM3VisionEncoder(
            image_shape=(size, size, 3),
            patch_size=14,
            num_layers=2,
            fpn_hidden_dim=WIDTH,
            fpn_scale_factors=[4.0, 2.0, 1.0, 0.5],
            pretrain_image_shape=(42, 42, 3),
            window_size=2,
            global_attn_indexes=[1],
            **common,
        ),
        text_encoder=layers.SAM3TextEncoder(vocabulary_size=VOCABULARY, embedding_dim=WIDTH, num_layers=2, **common),
        geometry_encoder=layers.SAM3GeometryEncoder(num_layers=1, roi_size=7, **common),
        detr_encoder=layers.SAM3DetrEncoder(num_layers=1, **common),
        detr_decoder=layers.SAM3DetrDecoder(
            image_shape=(size, size, 3), patch_size=14, num_layers=1, num_queries=8, **common
        ),
        mask_decoder=layers.SAM3MaskDecoder(num_upsampling_stages=3, hidden_dim=WIDTH, num_heads=2, dtype=dtype),
    )


def _sd3(dtype):
    import keras_hub
    from keras_hub.src.models.vae.vae_backbone import VAEBackbone

    # 32 filters: its GroupNormalization has 32 groups.
    vae = VAEBackbone(
        [32, 32, 32, 32], [1, 1, 1, 1], [32, 32, 32, 32], [1, 1, 1, 1], sampler_method="mode", dtype=dtype
    )
    clip = dict(
        vocabulary_size=VOCABULARY,
        embedding_dim=WIDTH,
        hidden_dim=WIDTH,
        num_layers=2,
        num_heads=2,
        intermediate_dim=2 * WIDTH,
        intermediate_output_index=-2,
        max_sequence_length=SEQUENCE,
        dtype=dtype,
    )
    return dict(
        mmdit_patch_size=2,
        mmdit_hidden_dim=WIDTH,
        mmdit_num_layers=1,
        mmdit_num_heads=2,
        mmdit_position_size=8,
        mmdit_qk_norm=None,
        mmdit_dual_attention_indices=None,
        vae=vae,
        clip_l=keras_hub.models.CLIPTextEncoder(intermediate_activation="quick_gelu", name="clip_l", **clip),
        clip_g=keras_hub.models.CLIPTextEncoder(intermediate_activation="gelu", name="clip_g", **clip),
        image_shape=(IMAGE, IMAGE, 3),
    )


def _sub(kind, dtype, **overrides):
    """A small KerasHub backbone of class `kind` (for composite backbones)."""
    import keras_hub

    kwargs = _backbone_kwargs(kind, dtype)
    kwargs.update(overrides)
    return getattr(keras_hub.models, kind)(**kwargs)


def _backbone_kwargs(kind, dtype):
    spec = _BACKBONES[kind]
    if callable(spec):
        kwargs = dict(spec(dtype))
    else:
        kwargs = dict(spec)
    kwargs["dtype"] = dtype
    return kwargs


# ---------------------------------------------------------------------------------------------------------
# Classes that cannot be built small here, with the reason.

_GENERATE_ONLY = "a generate-only pipeline: its fit() raises NotImplementedError ('Currently, `fit` is not supported')"
_BASNET = (
    "48.6 M parameters at its smallest: its bridge and decoder are 8 x projection_filters = 512 channels "
    "wide, and projection_filters must be 64 (it feeds ResNetBackbone's first stage, fixed at 64 filters)"
)
_SAM3 = (
    "SAM3GeometryEncoder hands its (batch, prompt tokens) mask unexpanded to ops.dot_product_attention, which "
    "broadcasts it only when batch == prompt tokens (KerasHub's test: batch 2, one box + CLS); at batch 4 the "
    "forward pass fails with 'Incompatible shapes: [4,2,2,2] vs. [4,2]', and without a box prompt the DETR "
    "encoder's mask is 3 tokens short ([4,2,4,36] vs. [4,1,4,33])"
)
_UNBUILDABLE = {
    "FluxTextToImage": _GENERATE_ONLY,
    "SAM3PromptableConceptBackbone": _SAM3,
    "SAM3PromptableConceptImageSegmenter": _SAM3,
    "PARSeqCausalLM": "its compute_loss does ops.logical_and(y != end_token_id, sample_weight), so fit(x, y) "
    "without sample weights fails with 'ValueError: None values not supported'",
    # Measured: 48.6 M parameters (32 x 32 input, the smallest ResNet encoder).
    "BASNetBackbone": _BASNET,
    "BASNetImageSegmenter": _BASNET,
    "StableDiffusion3TextToImage": _GENERATE_ONLY,
    "StableDiffusion3ImageToImage": _GENERATE_ONLY,
    "StableDiffusion3Inpaint": _GENERATE_ONLY,
    "Gemma4AssistantCausalLM": "a speculative-decoding draft model: its call() raises NotImplementedError "
    "('cannot be called standalone'), so fit has no forward pass",
}


_MOE_FLOAT64 = (
    "in float64, fit fails: its sparse-MoE block casts the token mask to float32 in the training-only "
    "router path ('Input 'y' of 'Mul' Op has type float32 that does not match type float64')"
)
# Backbones (and their tasks) that build in float32 but not in float64.
_UNBUILDABLE_FLOAT64 = {
    "MixtralBackbone": _MOE_FLOAT64,
    "QwenMoeBackbone": _MOE_FLOAT64,
    "Qwen3MoeBackbone": _MOE_FLOAT64,
    "Qwen3_5MoeBackbone": _MOE_FLOAT64,
    "SAMBackbone": "in float64 the forward pass fails: SAMPromptEncoder's point embeddings stay float32 ('cannot "
    "compute AddV2 as input #1 was expected to be a double tensor but is a float tensor')",
}


# ---------------------------------------------------------------------------------------------------------
# Data.


def _tokens(rng, shape=(BATCH, SEQUENCE), vocabulary=VOCABULARY):
    return rng.integers(1, vocabulary, shape).astype("int32")


def _labels(rng):
    return rng.integers(0, CLASSES, BATCH).astype("int32")


def _fill(shape, default):
    return tuple(default if d is None else d for d in shape)


# Inputs that the generic rule below would get wrong, by backbone class: a shape (without the batch axis),
# or a function (rng, dtype) -> the batch.
_INPUT_SHAPES = {
    # Raw 16 kHz audio; the 3-convolution stem (strides 64, 3, 2) needs ~2k samples for a few frames.
    "MoonshineBackbone": {"encoder_input_values": (2048, 1), "encoder_padding_mask": (2048,)},
    # One foreground point and one box per image, no mask prompt.
    "SAMBackbone": {
        "points": lambda rng, dtype: rng.uniform(0, IMAGE, (BATCH, 1, 2)).astype(dtype),
        "labels": lambda rng, dtype: np.ones((BATCH, 1), dtype),
        "boxes": lambda rng, dtype: np.sort(rng.uniform(0, IMAGE, (BATCH, 1, 2, 2)), axis=2).astype(dtype),
        "masks": lambda rng, dtype: np.zeros((BATCH, 0, IMAGE, IMAGE, 1), dtype),
    },
    # One positive box prompt (cx, cy, w, h, ...) per image.
    "SAM3PromptableConceptBackbone": {
        "boxes": lambda rng, dtype: rng.uniform(0.25, 0.75, (BATCH, 1, 5)).astype(dtype),
        "box_labels": lambda rng, dtype: np.ones((BATCH, 1), dtype),
        "token_ids": (32,),
        "padding_mask": (32,),
    },
}


def _array_for(name, tensor, rng, shape=None):
    """A batch for the backbone input `tensor` (a KerasTensor) called `name`."""
    dtype = keras.backend.standardize_dtype(tensor.dtype)
    if callable(shape):
        return shape(rng, dtype)
    shape = (None,) + tuple(shape) if shape is not None else tuple(tensor.shape)
    if len(shape) >= 4 or "image" in name or "pixel" in name:  # images (or video): the float input of a CNN/ViT
        shape = (BATCH,) + _fill(shape[1:], IMAGE)
        return rng.uniform(0.0, 1.0, shape).astype(dtype)
    shape = (BATCH,) + _fill(shape[1:], SEQUENCE)
    if "position" in name:  # position ids: 0, 1, ... along the sequence
        return np.broadcast_to(np.arange(shape[-1]), shape).astype(dtype)
    if "mask" in name:
        return np.ones(shape, dtype=dtype)
    if "segment" in name:
        return np.zeros(shape, dtype=dtype)
    if "int" in dtype:
        return _tokens(rng, shape).astype(dtype)
    return rng.uniform(0.0, 1.0, shape).astype(dtype)


def _inputs_of(model):
    """{name: KerasTensor} of a Functional model's inputs (a single input keyed by its name)."""
    spec = model.input
    if isinstance(spec, dict):
        return dict(spec)
    if isinstance(spec, (list, tuple)):
        return {t.name: t for t in spec}
    return {spec.name: spec}


def _data_for(model, rng, kind=None):
    """x for a Functional (KerasHub) model: a dict of arrays, or one array for a single-input model."""
    inputs = _inputs_of(model)
    shapes = _INPUT_SHAPES.get(kind or type(model).__name__, {})
    arrays = {name: _array_for(name, tensor, rng, shapes.get(name)) for name, tensor in inputs.items()}
    if not isinstance(model.input, dict) and len(arrays) == 1:
        return next(iter(arrays.values()))
    return arrays


def _next_tokens(tokens):
    return np.roll(tokens, -1, axis=1)


def _sparse_ce(dtype):
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype=dtype)


class ContrastiveCrossEntropy(keras.losses.Loss):
    """CLIP's contrastive loss on (batch, batch) image-text logits: example i's text is the class of image i.

    The targets are the positions in the batch, so the loss holds for any split of the batch (fit's
    batch_size); y_true (``np.arange(BATCH)`` for the whole batch) only fixes the batch size.
    """

    def call(self, y_true, y_pred):
        targets = keras.ops.arange(keras.ops.shape(y_pred)[0], dtype="int32")
        return keras.losses.sparse_categorical_crossentropy(targets, y_pred, from_logits=True)


def _mse(dtype):
    return keras.losses.MeanSquaredError(dtype=dtype)


# ---------------------------------------------------------------------------------------------------------
# Wrapping a backbone into a one-output classifier, a dict-output task into a one-output model.


def _float_outputs(outputs):
    """The floating-point output tensors of a model call (a tensor, or a dict / list of them), in a stable order."""
    if isinstance(outputs, dict):  # not features: attention masks, SAM's positional grid (one for the whole batch)
        outputs = {
            k: v for k, v in outputs.items() if not k.endswith("_mask") and k != "prompt_dense_positional_embeddings"
        }
    tensors = keras.tree.flatten(outputs)  # dicts in sorted-key order
    return [
        t
        for t in tensors
        if hasattr(t, "dtype")
        and "float" in keras.backend.standardize_dtype(t.dtype)
        and len(t.shape) >= 2
        and t.shape[-1] is not None
    ]


def _pooled(feature):
    """Mean over the non-batch, non-channel axes: (batch, ..., channels) -> (batch, channels)."""
    if len(feature.shape) > 2:
        feature = keras.ops.mean(feature, axis=tuple(range(1, len(feature.shape) - 1)))
    return feature


def _fresh_inputs(model):
    inputs = _inputs_of(model)
    return {name: keras.Input(shape=t.shape[1:], dtype=t.dtype, name=name) for name, t in inputs.items()}


def _call_inputs(model):
    inputs = _fresh_inputs(model)
    return inputs if isinstance(model.input, dict) or len(inputs) > 1 else next(iter(inputs.values()))


def _classifier_head(model, dtype):
    """keras.Model(model's inputs -> every float output pooled over its non-batch, non-channel axes,
    concatenated -> Dense(4)), with `model` a nested layer."""
    inputs = _call_inputs(model)
    features = [_pooled(t) for t in _float_outputs(model(inputs))]
    feature = features[0] if len(features) == 1 else keras.layers.Concatenate(dtype=dtype)(features)
    logits = keras.layers.Dense(CLASSES, dtype=dtype, name="sweep_head")(feature)
    return keras.Model(inputs, logits, name=f"{model.name}_classifier")


def _all_outputs(model, dtype):
    """keras.Model(model's inputs -> every float output flattened and concatenated), for dict-output tasks."""
    inputs = _call_inputs(model)
    flat = [keras.layers.Flatten(dtype=dtype)(t) for t in _float_outputs(model(inputs))]
    output = flat[0] if len(flat) == 1 else keras.layers.Concatenate(dtype=dtype)(flat)
    return keras.Model(inputs, output, name=f"{model.name}_outputs")


def _wrapped_backbone(kind, dtype, rng):
    backbone = _make_backbone(kind, dtype)
    if kind in _CONTRASTIVE:
        inputs = _call_inputs(backbone)
        model = keras.Model(inputs, backbone(inputs)["vision_logits"], name=f"{backbone.name}_contrastive")
        y = np.arange(BATCH, dtype="int32")
        return model, (_data_for(backbone, rng), y), ContrastiveCrossEntropy(dtype=dtype)
    model = _classifier_head(backbone, dtype)
    return model, (_data_for(backbone, rng), _labels(rng)), _sparse_ce(dtype)


_CONTRASTIVE = ("CLIPBackbone", "MetaCLIP2Backbone", "SigLIPBackbone")


# ---------------------------------------------------------------------------------------------------------
# Builders.


def _make_backbone(kind, dtype):
    import keras_hub

    if kind in _UNBUILDABLE:
        raise Unbuildable(_UNBUILDABLE[kind])
    if dtype == "float64" and kind in _UNBUILDABLE_FLOAT64:
        raise Unbuildable(_UNBUILDABLE_FLOAT64[kind])
    if kind not in _BACKBONES:
        raise Unbuildable(f"no small configuration of {kind} in the sweep catalog")
    return getattr(keras_hub.models, kind)(**_backbone_kwargs(kind, dtype))


def _accepts(cls, argument):
    return argument in inspect.signature(cls.__init__).parameters


# Task constructor arguments beyond (backbone, preprocessor=None, num_classes, dropout=0).
_TASK_KWARGS = {
    # The speculative-decoding assistant; its projections and centroids serve `call_with_cache` only.
    "Gemma4AssistantCausalLM": dict(
        backbone_hidden_size=WIDTH, num_centroids=4, centroid_intermediate_top_k=2, use_ordered_embeddings=True
    ),
    "VGGImageClassifier": dict(pooling_hidden_dim=WIDTH),
    "RetinaNetObjectDetector": dict(pre_logits_num_conv_layers=1),  # its heads are 256 filters wide, fixed
    # Its default compile() reads preprocessor.tokenizer; the sweep compiles it with its own loss.
    "PARSeqCausalLM": dict(compile=False),
    "MobileNetImageClassifier": dict(num_features=32),
    "MobileNetV5ImageClassifier": dict(head_hidden_size=32),
}


# Tasks that need another configuration of their backbone class than the backbone's own entry.
_TASK_BACKBONES = {
    "BLIP2Seq2SeqLM": lambda dtype: _blip2(dtype, "flan_t5"),  # BLIP-2 with its encoder-decoder (Flan-T5) LM
}


def _task_kwargs(cls, extra, **kwargs):
    """The task constructor's kwargs: preprocessor=None, dropout=0 where it takes them."""
    kwargs.update(extra)
    kwargs["preprocessor"] = None
    for argument in ("dropout", "drop_rate"):
        if _accepts(cls, argument):
            kwargs[argument] = 0.0
    return kwargs


def _build_task(cls, dtype, rng):
    import keras_hub

    models = keras_hub.models
    kind = cls.backbone_cls.__name__
    if cls.__name__ in _UNBUILDABLE:
        raise Unbuildable(_UNBUILDABLE[cls.__name__])
    if cls.__name__ in _TASK_BACKBONES:
        backbone = getattr(models, kind)(**_TASK_BACKBONES[cls.__name__](dtype), dtype=dtype)
    else:
        backbone = _make_backbone(kind, dtype)
    data = _data_for(backbone, rng, kind)
    extra = _TASK_KWARGS.get(cls.__name__, {})
    if issubclass(cls, models.Seq2SeqLM) or cls.__name__.endswith("AudioToText"):
        task = cls(**_task_kwargs(cls, extra, backbone=backbone))
        return task, (data, _next_tokens(data["decoder_token_ids"])), _sparse_ce(dtype)
    if issubclass(cls, models.CausalLM):
        task = cls(**_task_kwargs(cls, extra, backbone=backbone))
        return task, (data, _next_tokens(data["token_ids"])), _sparse_ce(dtype)
    if issubclass(cls, models.MaskedLM):
        task = cls(**_task_kwargs(cls, extra, backbone=backbone))
        data["mask_positions"] = np.stack([rng.choice(SEQUENCE, 2, replace=False) for _ in range(BATCH)]).astype(
            "int32"
        )
        return task, (data, _tokens(rng, (BATCH, 2))), _sparse_ce(dtype)
    if issubclass(cls, (models.TextClassifier, models.ImageClassifier)):
        task = cls(**_task_kwargs(cls, extra, backbone=backbone, num_classes=CLASSES))
        return task, (data, _labels(rng)), _sparse_ce(dtype)
    if issubclass(cls, models.TextEmbedder):
        task = cls(**_task_kwargs(cls, extra, backbone=backbone))
        out = task(data)
        return task, (data, rng.normal(size=tuple(out.shape)).astype(dtype)), _mse(dtype)
    if issubclass(cls, models.ImageSegmenter):
        kwargs = {"num_classes": CLASSES} if _accepts(cls, "num_classes") else {}
        task = cls(**_task_kwargs(cls, extra, backbone=backbone, **kwargs))
        out = task(data)
        if isinstance(out, (dict, list, tuple)):  # SAM, SAM3: masks and scores; regress every output
            return _regress_all(task, data, dtype, rng)
        if kwargs and out.shape[-1] == CLASSES:  # one-hot pixels: the task's own default loss and metric
            pixels = rng.integers(0, CLASSES, tuple(out.shape[:-1]))
            y = np.eye(CLASSES, dtype=dtype)[pixels]
            return task, (data, y), keras.losses.CategoricalCrossentropy(from_logits=True, dtype=dtype)
        return task, (data, rng.uniform(0.0, 1.0, tuple(out.shape)).astype(dtype)), _mse(dtype)
    if issubclass(cls, models.DepthEstimator):
        task = cls(**_task_kwargs(cls, extra, backbone=backbone, depth_estimation_type="relative"))
        inputs = _call_inputs(task)
        model = keras.Model(inputs, task(inputs)["depths"], name=f"{task.name}_depths")
        out = model(data)
        return model, (data, rng.uniform(0.0, 1.0, tuple(out.shape)).astype(dtype)), _mse(dtype)
    if issubclass(cls, models.ObjectDetector):  # boxes and class logits; regress every output
        task = cls(**_task_kwargs(cls, extra, backbone=backbone, num_classes=CLASSES))
        return _regress_all(task, data, dtype, rng)
    raise Unbuildable(f"the sweep has no loss for a {cls.__mro__[1].__name__}")


def _regress_all(task, data, dtype, rng):
    """A dict-output task as one model: every float output flattened, MSE against random targets.

    Their own compute_loss (box matching, mask/IoU losses) needs labelled boxes or masks; the sweep trains
    every head on a regression instead, so that every output-producing weight gets a gradient."""
    model = _all_outputs(task, dtype)
    out = model(data)
    return model, (data, rng.normal(size=tuple(out.shape)).astype(dtype)), _mse(dtype)


def _application(constructor, size, parameters=None):
    def build(dtype, rng):
        if parameters is not None:
            count, smaller = parameters
            family = (
                f"its family's smaller members ({smaller}) are in the sweep"
                if smaller
                else "no smaller member of its family exists"
            )
            raise Unbuildable(
                f"{count / 1e6:.1f} M parameters at its smallest input ({size} x {size}, 4 classes) > "
                f"{MAX_PARAMETERS / 1e6:.0f} M; keras.applications exposes no smaller configuration of it ({family})"
            )
        kwargs = dict(weights=None, input_shape=(size, size, 3), classes=CLASSES)  # dtype: floatx, set by build()
        if _accepts_kw(constructor, "classifier_activation"):
            kwargs["classifier_activation"] = None
        model = constructor(**kwargs)
        images = rng.uniform(0.0, 1.0, (BATCH, size, size, 3)).astype(dtype)
        return model, (images, _labels(rng)), _sparse_ce(dtype)

    return build


def _accepts_kw(function, argument):
    return argument in inspect.signature(function).parameters


# The smallest input (side) of the keras.applications networks that refuse 32 x 32.
_APPLICATION_SIZE = {"InceptionV3": 75, "InceptionResNetV2": 75, "Xception": 71}
# Trainable parameters (4 classes, smallest input) of the networks over MAX_PARAMETERS, measured once
# (keras 3.15), with the smaller member of their family that the sweep holds (None: there is none).
_APPLICATION_PARAMETERS = {
    "ConvNeXtSmall": (49_457_764, "ConvNeXtTiny"),
    "ConvNeXtBase": (87_570_564, "ConvNeXtTiny"),
    "ConvNeXtLarge": (196_236_484, "ConvNeXtTiny"),
    "ConvNeXtXLarge": (348_156_164, "ConvNeXtTiny"),
    "EfficientNetB6": (40_744_924, "EfficientNetB0-B5"),
    "EfficientNetB7": (63_797_204, "EfficientNetB0-B5"),
    "EfficientNetV2M": (52_863_480, "EfficientNetV2B0-B3 and EfficientNetV2S"),
    "EfficientNetV2L": (117_239_396, "EfficientNetV2B0-B3 and EfficientNetV2S"),
    "InceptionResNetV2": (54_282_340, None),
    "NASNetLarge": (84_736_282, "NASNetMobile"),
    "ResNet101": (42_561_028, "ResNet50"),
    "ResNet152": (58_227_716, "ResNet50"),
    "ResNet101V2": (42_537_092, "ResNet50V2"),
    "ResNet152V2": (58_196_100, "ResNet50V2"),
    "VGG16": (33_613_636, None),  # 18.9 M of them in the 4096-wide fully connected top
    "VGG19": (38_923_332, None),
}


@functools.lru_cache(maxsize=None)
def catalog():
    import keras_hub

    models = keras_hub.models
    entries = {}
    seen = set()
    for name in sorted(dir(models)):
        cls = getattr(models, name)
        if not isinstance(cls, type) or not issubclass(cls, (models.Backbone, models.Task)):
            continue
        if cls in (models.Backbone, models.FeaturePyramidBackbone):
            continue  # abstract bases
        if issubclass(cls, models.Task) and getattr(cls, "backbone_cls", None) is None:
            continue  # abstract task bases
        if cls.__name__ != name and hasattr(models, cls.__name__):
            continue  # an alias of a class listed under its own name
        if cls in seen:
            continue
        seen.add(cls)
        if issubclass(cls, models.Task):
            entries[f"keras_hub.{name}"] = functools.partial(_build_task, cls)
        else:
            entries[f"keras_hub.{name}"] = functools.partial(_wrapped_backbone, name)
    for name in sorted(dir(keras.applications)):
        constructor = getattr(keras.applications, name)
        if name[:1].isupper() and callable(constructor):
            entries[f"applications.{name}"] = _application(
                constructor, _APPLICATION_SIZE.get(name, IMAGE), _APPLICATION_PARAMETERS.get(name)
            )
    return entries


def build(name, dtype="float32", seed=0):
    """(model, (x, y), loss): a built (called once) Keras model with ONE output tensor, a batch (x, y) of BATCH
    examples with numpy arrays (x may be a dict), and a keras loss object suited to it. Raises Unbuildable(reason)."""
    builders = catalog()
    if name not in builders:
        raise KeyError(f"No sweep entry {name!r}.")
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    # keras.applications take their dtype from floatx; so do the KerasHub layers that ignore the constructor's
    # dtype= (DenseNet, EfficientNet, MiT/SegFormer, VGG, ViTDet, DeepLabV3, Flux, SmolLM3, EdRec's LM head).
    # The global dtype policy too: once anything has read it (a float32 build before), Keras keeps it, and
    # floatx alone no longer reaches those layers (a float64 DenseNet built after a float32 one was float32).
    previous, previous_policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx(dtype)
    keras.config.set_dtype_policy(dtype)
    try:
        model, (x, y), loss = builders[name](dtype, rng)
    finally:
        keras.config.set_floatx(previous)
        keras.config.set_dtype_policy(previous_policy)
    for layer in model._flatten_layers(include_self=False):  # dropout off
        if isinstance(layer, keras.layers.Dropout):
            layer.rate = 0.0
    out = model(x)
    if not hasattr(out, "shape") or isinstance(out, (dict, list, tuple)):
        raise TypeError(f"{name}: the sweep model must have one output tensor, got {type(out).__name__}")
    return model, (x, y), loss


def parameter_count(model):
    return int(sum(np.prod(v.shape) for v in model.trainable_variables))
