"""tinygrad_lab.metrics: hand-computed cases, then scikit-learn's values on hypothesis-drawn
labels and scores (functions and the batch-by-batch Metric objects alike), and bad input."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import sklearn.metrics as skm
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tinygrad_lab import metrics

# --- hand-computed --------------------------------------------------------------------------------
Y_TRUE = np.array([0, 0, 1, 1, 2, 2])
Y_PRED = np.array([0, 1, 1, 1, 2, 0])
# class 0: tp 1 fp 1 fn 1; class 1: tp 2 fp 1 fn 0; class 2: tp 1 fp 0 fn 1


def test_hand_computed_multiclass():
    assert metrics.accuracy(Y_TRUE, Y_PRED) == pytest.approx(4 / 6)
    np.testing.assert_array_equal(metrics.confusion_matrix(Y_TRUE, Y_PRED),
                                  [[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    np.testing.assert_allclose(metrics.precision(Y_TRUE, Y_PRED, average=None), [1 / 2, 2 / 3, 1])
    np.testing.assert_allclose(metrics.recall(Y_TRUE, Y_PRED, average=None), [1 / 2, 1, 1 / 2])
    np.testing.assert_allclose(metrics.f1(Y_TRUE, Y_PRED, average=None), [1 / 2, 4 / 5, 2 / 3])
    macro = (0.5 + 2 / 3 + 1) / 3
    assert metrics.precision(Y_TRUE, Y_PRED, average="macro") == pytest.approx(macro)
    assert metrics.f1(Y_TRUE, Y_PRED, average="micro") == pytest.approx(4 / 6)
    assert metrics.recall(Y_TRUE, Y_PRED, average="weighted") == pytest.approx(4 / 6)


def test_scores_and_one_hot_follow_the_input_rules():
    scores = np.eye(3)[Y_PRED] * 0.8 + 0.1  # (6, 3) probabilities whose argmax is Y_PRED
    one_hot = np.eye(3)[Y_TRUE]
    assert metrics.accuracy(one_hot, scores) == pytest.approx(4 / 6)
    assert metrics.accuracy(Y_TRUE, np.log(scores)) == pytest.approx(4 / 6)  # logits
    binary = np.array([0.2, 0.7, 0.51, 0.49])
    assert metrics.accuracy([0, 1, 1, 1], binary) == pytest.approx(3 / 4)
    assert metrics.accuracy([0, 1, 1, 1], binary, threshold=0.6) == pytest.approx(2 / 4)
    # a language model's (B, T, V) logits against (B, T) targets
    logits = np.zeros((2, 3, 5))
    logits[..., 2] = 1.0
    assert metrics.accuracy(np.array([[2, 2, 0], [2, 1, 2]]), logits) == pytest.approx(4 / 6)
    assert metrics.top_k_accuracy([0, 1, 2], np.array([[3, 2, 1], [3, 2, 1], [3, 2, 1.]]),
                                  k=2) == pytest.approx(2 / 3)


def test_roc_auc_hand_computed_with_ties():
    # positives 0.8, 0.4; negatives 0.4, 0.1: pairs (0.8 > 0.4), (0.8 > 0.1), (0.4 = 0.4: half),
    # (0.4 > 0.1) -> 3.5 / 4
    assert metrics.roc_auc([1, 1, 0, 0], [0.8, 0.4, 0.4, 0.1]) == pytest.approx(3.5 / 4)


def test_regression_hand_computed():
    t, p = np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 5.0])
    assert metrics.mean_squared_error(t, p) == pytest.approx(4 / 3)
    assert metrics.mean_absolute_error(t, p) == pytest.approx(2 / 3)
    assert metrics.r2(t, p) == pytest.approx(1 - 4 / 2)
    assert metrics.r2([2.0, 2.0], [2.0, 2.0]) == 1.0  # sklearn's force_finite
    assert metrics.r2([2.0, 2.0], [1.0, 2.0]) == 0.0


# --- against scikit-learn ------------------------------------------------------------------------
@st.composite
def label_pairs(draw: st.DrawFn, max_classes: int = 5) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(1, 40))
    c = draw(st.integers(2, max_classes))
    labels = st.lists(st.integers(0, c - 1), min_size=n, max_size=n)
    return np.array(draw(labels)), np.array(draw(labels))


@settings(max_examples=60)
@given(label_pairs(), st.sampled_from(["macro", "micro", "weighted", None]),
       st.sampled_from([0.0, 1.0, np.nan]))
def test_precision_recall_f1_match_sklearn(pair, average, zero_division):
    t, p = pair
    for ours, theirs in ((metrics.precision, skm.precision_score),
                         (metrics.recall, skm.recall_score), (metrics.f1, skm.f1_score)):
        expected = theirs(t, p, average=average, zero_division=zero_division)
        got = ours(t, p, average=average, zero_division=zero_division)
        np.testing.assert_allclose(got, expected, equal_nan=True, err_msg=ours.__name__)


@settings(max_examples=40)
@given(label_pairs(max_classes=2), st.sampled_from([0.0, 1.0]))
def test_binary_average_matches_sklearn(pair, zero_division):
    t, p = pair
    for ours, theirs in ((metrics.precision, skm.precision_score),
                         (metrics.recall, skm.recall_score), (metrics.f1, skm.f1_score)):
        assert ours(t, p, zero_division=zero_division) == pytest.approx(
            theirs(t, p, zero_division=zero_division))


@pytest.mark.filterwarnings("ignore:A single label was found")  # sklearn's, on one label
@settings(max_examples=30)
@given(label_pairs())
def test_labels_argument_and_confusion_matrix_match_sklearn(pair):
    t, p = pair
    labels = [0, 1, 7]  # 7 never occurs: zero counts
    assume(np.isin(np.asarray(t), labels).any())  # sklearn refuses labels none of y_true has
    np.testing.assert_array_equal(metrics.confusion_matrix(t, p),
                                  skm.confusion_matrix(t, p))
    np.testing.assert_array_equal(metrics.confusion_matrix(t, p, labels=labels),
                                  skm.confusion_matrix(t, p, labels=labels))
    assert metrics.f1(t, p, average="macro", labels=labels, zero_division=0) == pytest.approx(
        skm.f1_score(t, p, average="macro", labels=labels, zero_division=0))
    assert metrics.accuracy(t, p) == pytest.approx(skm.accuracy_score(t, p))


def test_zero_division_warn_warns_and_gives_zero():
    with pytest.warns(RuntimeWarning, match="precision"):
        assert metrics.precision([1, 1], [0, 0]) == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert metrics.precision([1, 1], [0, 0], zero_division=1) == 1.0


@settings(max_examples=25)
@given(st.integers(2, 40), st.integers(2, 6), st.integers(0, 2**31 - 1))
def test_roc_auc_and_top_k_match_sklearn(n, c, seed):
    rng = np.random.default_rng(seed)
    t = np.concatenate([np.arange(c), rng.integers(0, c, n)])  # every class present
    scores = rng.dirichlet(np.ones(c), len(t))
    if c == 2:
        assert metrics.roc_auc(t, scores[:, 1]) == pytest.approx(
            skm.roc_auc_score(t, scores[:, 1]))
        rounded = np.round(scores[:, 1], 1)  # ties
        assert metrics.roc_auc(t, rounded) == pytest.approx(skm.roc_auc_score(t, rounded))
    else:
        assert metrics.roc_auc(t, scores) == pytest.approx(
            skm.roc_auc_score(t, scores, multi_class="ovr", average="macro"))
        logits = np.log(scores) + 3.0  # softmax gives the probabilities back
        assert metrics.roc_auc(t, logits) == pytest.approx(
            skm.roc_auc_score(t, scores, multi_class="ovr", average="macro"))
    if c > 2:  # sklearn reads two columns as binary scores
        assert metrics.top_k_accuracy(t, scores, k=2) == pytest.approx(
            skm.top_k_accuracy_score(t, scores, k=2, labels=np.arange(c)))


@settings(max_examples=30)
@given(st.integers(2, 30), st.integers(1, 3), st.integers(0, 2**31 - 1))
def test_regression_matches_sklearn(n, outputs, seed):
    rng = np.random.default_rng(seed)
    t = rng.standard_normal((n, outputs))
    p = t + rng.standard_normal((n, outputs))
    assert metrics.mean_squared_error(t, p) == pytest.approx(skm.mean_squared_error(t, p))
    assert metrics.mean_absolute_error(t, p) == pytest.approx(skm.mean_absolute_error(t, p))
    assert metrics.r2(t, p) == pytest.approx(skm.r2_score(t, p), rel=1e-9, abs=1e-12)
    metric = metrics.get("r2")
    for chunk in np.array_split(np.arange(n), 3):
        metric.update_state(t[chunk], p[chunk])
    # from summed moments: digits cancel where y's spread is tiny (n=2, two close values)
    assert metric.result() == pytest.approx(skm.r2_score(t, p), rel=1e-6, abs=1e-9)


# --- stateful metrics -----------------------------------------------------------------------------
@settings(max_examples=40)
@given(st.integers(1, 50), st.integers(2, 5), st.integers(1, 4), st.integers(0, 2**31 - 1))
def test_batched_metrics_equal_the_function_over_everything(n, c, parts, seed):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, c, n)
    scores = rng.standard_normal((n, c))
    p = scores.argmax(axis=1)
    names = ["accuracy", "precision", "recall", "f1", "top_k_accuracy"]
    objects = [metrics.get(name) for name in names]
    for chunk in np.array_split(np.arange(n), parts):
        for m in objects:
            m.update_state(t[chunk], scores[chunk])
    present = np.union1d(t, p)
    expected = [skm.accuracy_score(t, p),
                skm.precision_score(t, p, average="macro", labels=present, zero_division=0),
                skm.recall_score(t, p, average="macro", labels=present, zero_division=0),
                skm.f1_score(t, p, average="macro", labels=present, zero_division=0),
                skm.top_k_accuracy_score(t, scores, k=5, labels=np.arange(c)) if c > 5 else 1.0]
    for m, want in zip(objects, expected):
        assert m.result() == pytest.approx(want), m.name
    for m in objects:
        m.reset_state()
        assert math.isnan(m.result())


def test_metric_classes_average_and_class_id():
    t = np.array([0, 1, 1, 0, 1, 0, 1, 1])
    prob = np.array([0.1, 0.9, 0.4, 0.6, 0.8, 0.2, 0.7, 0.3])
    p = (prob > 0.5).astype(int)
    assert metrics.get("precision")(t, prob) == pytest.approx(skm.precision_score(t, p))
    assert metrics.get("recall")(t, prob) == pytest.approx(skm.recall_score(t, p))
    assert metrics.Precision(class_id=0)(t, prob) == pytest.approx(
        skm.precision_score(t, p, pos_label=0))
    assert metrics.F1Score(average="weighted")(t, prob) == pytest.approx(
        skm.f1_score(t, p, average="weighted"))
    auc = metrics.get("auc")
    auc.update_state(t[:4], prob[:4])
    auc.update_state(t[4:], prob[4:])
    assert auc.result() == pytest.approx(skm.roc_auc_score(t, prob))
    assert metrics.BinaryAccuracy()(t, prob) == pytest.approx(skm.accuracy_score(t, p))
    weights = np.arange(1.0, 9.0)
    assert metrics.Accuracy()(t, prob, sample_weight=weights) == pytest.approx(
        skm.accuracy_score(t, p, sample_weight=weights))


def test_get_names_and_instances():
    for name in ["accuracy", "precision", "recall", "f1", "top_k_accuracy", "auc", "mse", "mae",
                 "r2"]:
        m = metrics.get(name)
        assert isinstance(m, metrics.Metric) and m.name == name
        assert metrics.get(name) is not m  # a fresh one each time
    mine = metrics.Precision(average="micro", name="p_micro")
    assert metrics.get(mine) is mine
    with pytest.raises(ValueError, match="known"):
        metrics.get("accuracy_of_the_universe")
    with pytest.raises(TypeError):
        metrics.get(3)


def test_merge_sums_states_of_different_sizes():
    """Two 'processes' whose confusion matrices saw different label ranges add up."""
    a, b = metrics.get("f1"), metrics.get("f1")
    a.update_state([0, 1], np.eye(2)[[0, 0]])
    b.update_state([2, 2], np.eye(3)[[2, 1]])
    states = [a, b]

    def fake_all_reduce(metric_values: list[dict[str, float]], op: str) -> dict[str, float]:
        keys = metric_values[0].keys()
        fold = max if op == "max" else sum
        return {k: float(fold(v[k] for v in metric_values)) for k in keys}

    # run both merges in lockstep: each call to reduce gathers the two processes' dicts
    import threading

    barrier = threading.Barrier(2)
    posted: dict[int, list[dict[str, float]]] = {}
    lock = threading.Lock()
    rounds = [0, 0]

    def make_reduce(rank: int):
        def reduce_(values: dict[str, float], op: str) -> dict[str, float]:
            r = rounds[rank]
            rounds[rank] += 1
            with lock:
                posted.setdefault(r, [None, None])[rank] = values
            barrier.wait()
            out = fake_all_reduce(posted[r], op)
            barrier.wait()
            return out
        return reduce_

    threads = [threading.Thread(target=m.merge, args=(make_reduce(i),))
               for i, m in enumerate(states)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    t, p = [0, 1, 2, 2], [0, 0, 2, 1]
    want = skm.f1_score(t, p, average="macro", zero_division=0)
    assert a.result() == pytest.approx(want) and b.result() == pytest.approx(want)
    with pytest.raises(ValueError, match="cannot be summed"):
        metrics.get("auc").merge(lambda values, op: values)


# --- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize("call, match", [
    (lambda: metrics.accuracy([0, 1, 2], [0, 1]), "labels"),
    (lambda: metrics.precision([0, 1, 2], [0, 1, 2]), "average='binary'"),
    (lambda: metrics.precision([0, 1], [0, 1], average="median"), "average"),
    (lambda: metrics.f1([0, 1], [0, 1], average="macro", zero_division=5), "zero_division"),
    (lambda: metrics.roc_auc([1, 1], [0.3, 0.4]), "one class"),
    (lambda: metrics.top_k_accuracy([0, 1], [0.3, 0.4]), "score matrix"),
    (lambda: metrics.top_k_accuracy([0, 1], np.ones((2, 3)), k=0), "k must"),
    (lambda: metrics.accuracy([-1, 0], [0, 0]), ">= 0"),
    (lambda: metrics.accuracy([0.5, 1], [0, 0]), "whole numbers"),
    (lambda: metrics.mean_squared_error([1.0, 2.0], [1.0]), "size"),
    (lambda: metrics.Precision(average="median"), "average"),
    (lambda: metrics.Accuracy()([0, 1], [0, 1], sample_weight=[1.0]), "sample_weight"),
])
def test_bad_input_is_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
