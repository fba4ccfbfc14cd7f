"""The examples' shared data loaders, models, training loop and output helpers (examples/_common.py)."""

import json
import math
import os
import sys

import numpy as np
import pytest

sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "examples")
)
import _common


def test_digits_subset_is_standardized_and_keeps_every_class():
    x, y = _common.digits()
    assert x.shape == (1797, 64) and x.dtype == np.float32 and y.dtype == np.int32
    varying = x.std(axis=0) > 0
    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(x.std(axis=0)[varying], 1.0, atol=1e-3)
    x_sub, y_sub = _common.digits(num_examples=50, seed=3)
    assert len(x_sub) == 50 and set(y_sub) == set(range(10))
    # Rows are unchanged digits rows: each subset row appears in the full set.
    assert all(np.any(np.all(x == row, axis=1)) for row in x_sub[:5])


def test_image_data_reads_a_local_npz_and_standardizes_it(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(40, 6, 6)).astype("uint8")
    images[:, 0, 0] = 7  # a constant pixel stays finite (zero)
    labels = rng.integers(0, 10, size=40)
    np.savez(tmp_path / "cifar10.npz", x_train=images, y_train=labels[:, None], x_test=images, y_test=labels)
    x, y = _common.image_data("cifar10", data_dir=str(tmp_path), num_examples=25, seed=1)
    assert x.shape == (25, 36) and y.shape == (25,) and y.dtype == np.int32
    assert np.all(np.isfinite(x)) and np.all(x[:, 0] == 0.0)
    full, full_labels = _common.image_data("cifar10", data_dir=str(tmp_path))
    np.testing.assert_allclose(full.std(axis=0)[1:], 1.0, atol=1e-4)
    assert sorted(full_labels.tolist()) == sorted(labels.tolist())


def test_text_corpus_is_the_pydoc_topics_or_a_local_file(tmp_path):
    corpus = _common.text_corpus()
    assert corpus.dtype == np.uint8 and len(corpus) > 100_000
    assert b"Assert statements are a convenient way" in corpus.tobytes()
    (tmp_path / "corpus.txt").write_bytes("héllo wörld".encode("utf-8"))
    local = _common.text_corpus(str(tmp_path))
    assert local.tobytes() == "héllo wörld".encode("utf-8")


def test_text_windows_are_next_byte_pairs_split_without_overlap():
    tokens = np.arange(1000) % 251
    (x, y), (x_val, y_val) = _common.text_windows(tokens, 9, validation_fraction=0.1)
    assert x.shape == ((900 - 1) // 9, 9) and x_val.shape == ((100 - 1) // 9, 9)
    np.testing.assert_array_equal(y[:, :-1], x[:, 1:])  # targets are the inputs shifted by one
    np.testing.assert_array_equal(x[:, 0], np.arange(len(x)) * 9 % 251)  # contiguous, non-overlapping
    assert x_val[0, 0] == 900 % 251  # the held-out part is the end of the text
    (x_cap, _), (x_val_cap, _) = _common.text_windows(tokens, 9, num_windows=20, seed=2)
    assert len(x_cap) == 20 and len(x_val_cap) == 5
    assert len({tuple(row) for row in x_cap}) == 20


def test_results_json_turns_numpy_and_non_finite_values_into_plain_json(tmp_path):
    path = _common.write_json(
        str(tmp_path),
        "r.json",
        {"a": np.float32(1.5), "b": np.arange(3), "c": [math.nan, math.inf, 2.0], 4: (np.int64(7),)},
    )
    with open(path) as handle:
        assert json.load(handle) == {"a": 1.5, "b": [0, 1, 2], "c": [None, None, 2.0], "4": [7]}


def test_verdict_table_aligns_its_columns(capsys):
    rows = [_common.verdict("short", "1", True), _common.verdict("a longer claim", "22", False)]
    assert [row["verdict"] for row in rows] == ["agree", "disagree"]
    _common.print_verdicts(rows)
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "Paper claim vs this run"
    # The measured column starts at the same offset on every row, after the longest claim.
    assert {line.index(word, len("a longer claim")) for line, word in zip(lines[4:], ("1", "22"))} == {16}


@pytest.mark.parametrize("dataset", ["digits", "mnist", "cifar10"])
def test_image_flags_take_their_default_subset_size(dataset):
    from absl import flags

    values = flags.FlagValues()
    _common.define_image_flags(num_examples=512, flag_values=values)
    values(["prog", f"--dataset={dataset}"])
    assert values.dataset == dataset and values.num_examples == 512 and values.data_dir is None
    with pytest.raises(flags.IllegalFlagValueError):
        values(["prog", "--dataset=imagenet"])


def test_text_flags_default_to_the_embedded_corpus():
    from absl import flags

    values = flags.FlagValues()
    _common.define_text_flags(flag_values=values)
    values(["prog"])
    assert values.data_dir is None
    values(["prog", "--data_dir=/data"])
    assert values.data_dir == "/data"


def test_mlp_is_seeded_two_hidden_layers_and_logits():
    import keras

    model = _common.mlp(8, 5, seed=3, activation="tanh", num_classes=4)
    assert [layer.name for layer in model.layers] == ["hidden_1", "hidden_2", "output"]
    assert [tuple(w.shape) for w in model.get_weights()] == [(8, 5), (5,), (5, 5), (5,), (5, 4), (4,)]
    assert [layer.activation for layer in model.layers] == [
        keras.activations.tanh,
        keras.activations.tanh,
        keras.activations.linear,
    ]
    same = _common.mlp(8, 5, seed=3, activation="tanh", num_classes=4)
    for a, b in zip(model.get_weights(), same.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(model.get_weights()[0], _common.mlp(8, 5, seed=4).get_weights()[0])
    # The same draws as a plain Sequential of Keras's default layers built right after seeding.
    keras.utils.set_random_seed(3)
    plain = keras.Sequential([keras.Input((8,)), keras.layers.Dense(5), keras.layers.Dense(5), keras.layers.Dense(4)])
    for a, b in zip(model.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_reset_optimizer_makes_a_used_optimizer_step_like_a_fresh_one():
    import keras

    variable = keras.Variable(np.array([1.0, -2.0], "float32"))
    gradient = np.array([0.5, 0.25], "float32")
    used = keras.optimizers.Adam(0.1)
    for _ in range(3):
        used.apply_gradients([(gradient, variable)])
    assert int(used.iterations) == 3
    _common.reset_optimizer(used, 0.01)
    assert int(used.iterations) == 0 and float(used.learning_rate) == pytest.approx(0.01)
    slots = [v for v in used.variables if v.path != used.learning_rate.path]
    assert all(not np.any(keras.ops.convert_to_numpy(v)) for v in slots)

    variable.assign([1.0, -2.0])
    used.apply_gradients([(gradient, variable)])
    fresh_variable = keras.Variable(np.array([1.0, -2.0], "float32"))
    keras.optimizers.Adam(0.01).apply_gradients([(gradient, fresh_variable)])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), keras.ops.convert_to_numpy(fresh_variable))


def test_reset_optimizer_without_a_learning_rate_keeps_the_rate_and_a_schedule():
    import keras

    variable = keras.Variable(np.array([1.0, -2.0], "float32"))
    optimizer = keras.optimizers.Adam(0.1)
    optimizer.apply_gradients([(np.array([0.5, 0.25], "float32"), variable)])
    _common.reset_optimizer(optimizer)
    # Filed: the float learning rate is one of the optimizer's variables, and was zeroed with its state.
    assert int(optimizer.iterations) == 0 and float(optimizer.learning_rate) == pytest.approx(0.1)
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    scheduled = keras.optimizers.Adam(schedule)
    scheduled.apply_gradients([(np.array([0.5, 0.25], "float32"), variable)])
    _common.reset_optimizer(scheduled)
    assert int(scheduled.iterations) == 0 and float(scheduled.learning_rate) == pytest.approx(0.1)


def test_xla_training_loop_takes_one_step_per_batch_and_returns_each_loss_before_its_step():
    import keras

    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 2)).astype("float32")  # 3 batches of 4 examples
    y = rng.standard_normal((3, 4, 1)).astype("float32")
    loss = keras.losses.MeanSquaredError()

    def linear_model():
        keras.utils.set_random_seed(0)
        return keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])

    model, optimizer = linear_model(), keras.optimizers.SGD(0.1)
    train = _common.xla_training_loop(model, optimizer, loss)
    losses = train(x, y).numpy()

    # Reference: gradient descent by hand on the same linear model, w ← w − η ∇ℓ.
    kernel, bias = (w.astype("float64") for w in linear_model().get_weights())
    expected = []
    for xb, yb in zip(x.astype("float64"), y.astype("float64")):
        residual = xb @ kernel + bias - yb
        expected.append(np.mean(residual**2))
        kernel = kernel - 0.1 * 2.0 * xb.T @ residual / len(xb)
        bias = bias - 0.1 * 2.0 * residual.mean(axis=0)
    assert losses.shape == (3,) and int(optimizer.iterations) == 3
    np.testing.assert_allclose(losses, expected, rtol=1e-5)
    np.testing.assert_allclose(model.get_weights()[0], kernel, rtol=1e-5)
    np.testing.assert_allclose(model.get_weights()[1], bias, rtol=1e-5)


def test_accuracy_counts_rows_whose_largest_logit_is_the_label():
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 1.0, 3.0], [0.0, 5.0, 1.0], [1.0, 0.0, 0.0]], "float32")
    labels = np.array([0, 2, 1, 1], "int32")
    assert float(_common.accuracy(labels, logits)) == pytest.approx(0.75)


CLAIM = "a is lower than b"


def test_directional_verdict_only_when_the_gap_exceeds_the_seed_to_seed_spread():
    # Gap 0.20 between the means, spread 0.10 (the larger range over seeds): a verdict.
    row = _common.gated_verdict(CLAIM, "a", [1.70, 1.75, 1.80], "b", [1.95, 2.00, 1.95], "<")
    assert row["verdict"] == "agree"
    assert row["gap"] == pytest.approx(0.2167, abs=1e-3) and row["spread"] == pytest.approx(0.10)
    assert "gap 0.22 > spread 0.10" in row["measured"] and "(1.70, 1.75, 1.80)" in row["measured"]
    # The same gap the other way round contradicts the claim; ">" flips the claimed direction.
    assert _common.gated_verdict(CLAIM, "a", [1.95, 2.00, 1.95], "b", [1.70, 1.75, 1.80], "<")["verdict"] == "disagree"
    assert _common.gated_verdict(CLAIM, "a", [1.95, 2.00, 1.95], "b", [1.70, 1.75, 1.80], ">")["verdict"] == "agree"
    # The case: η ranges of 1.29 vs 0.74 at seed 0 but 0.67 vs 0.67 at seed 1.
    row = _common.gated_verdict(CLAIM, "a", [0.74, 0.67], "b", [1.29, 0.67], "<")
    assert row["verdict"] == "no verdict"
    assert "no verdict: gap 0.27 within spread 0.62" in row["measured"]
    # A gap equal to the spread is still no verdict; a fixed threshold has no spread of its own.
    assert _common.gated_verdict(CLAIM, "a", [1.0, 1.5], "b", [1.75, 1.75], "<")["verdict"] == "no verdict"
    row = _common.gated_verdict(CLAIM, "a", [0.1, 0.15], "threshold", [0.2], "<")
    assert row["verdict"] == "agree" and row["spread"] == pytest.approx(0.05)
    # One seed: no spread, any gap decides. A NaN anywhere: no verdict.
    assert _common.gated_verdict(CLAIM, "a", [1.9], "b", [2.0], "<")["verdict"] == "agree"
    row = _common.gated_verdict(CLAIM, "a", [1.0, float("nan")], "b", [2.0, 2.0], "<")
    assert row["verdict"] == "no verdict" and "NaN" in row["measured"]


def test_match_claims_agree_within_the_spread_and_disagree_beyond_it():
    # "≈": the means match within the seed-to-seed noise.
    row = _common.gated_verdict("a matches b", "a", [2.70, 2.80], "b", [2.75, 2.85], "≈")
    assert row["verdict"] == "agree" and "gap 0.05 within spread 0.10" in row["measured"]
    row = _common.gated_verdict("a matches b", "a", [2.70, 2.80], "b", [3.00, 3.10], "≈")
    assert row["verdict"] == "disagree" and "gap 0.30 > spread 0.10" in row["measured"]
    # "≲": a better than b by any margin agrees; worse by more than the spread disagrees.
    assert _common.gated_verdict("a ≲ b", "a", [2.0, 2.1], "b", [3.0, 3.1], "≲")["verdict"] == "agree"
    assert _common.gated_verdict("a ≲ b", "a", [3.0, 3.1], "b", [2.0, 2.1], "≲")["verdict"] == "disagree"


def test_gated_verdict_writes_its_numbers_to_the_requested_decimals():
    row = _common.gated_verdict(CLAIM, "a", [1.8981, 1.9012], "b", [2.1953, 2.2007], "<", digits=3)
    assert row["verdict"] == "agree"
    assert "a 1.900 (1.898, 1.901) vs b 2.198 (2.195, 2.201); gap 0.298 > spread 0.005" in row["measured"]
