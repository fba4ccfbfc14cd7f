"""The examples' shared data loaders and output helpers (examples/_common.py)."""

import json
import math
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                "examples"))
import _common  # noqa: E402


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
    path = _common.write_json(str(tmp_path), "r.json", {
        "a": np.float32(1.5), "b": np.arange(3), "c": [math.nan, math.inf, 2.0], 4: (np.int64(7),)})
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
