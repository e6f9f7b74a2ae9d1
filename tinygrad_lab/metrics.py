"""Evaluation metrics over host NumPy arrays: functions for a whole set at once, and stateful
Metric objects that `train.fit(..., metrics=[...])` and the Keras front update batch by batch.

Input rules (the same for every function and Metric):

- `y_true`: integer class labels, shape (N,) (or (N, 1)); or one-hot rows (N, C), read as their
  argmax. For regression metrics: any real array of y_pred's shape.
- `y_pred`: a score matrix (..., C) with C >= 2 (probabilities or logits: the class is the argmax
  over the last axis); or binary scores (N,) / (N, 1) of floating dtype, the probability of
  class 1, thresholded at `threshold` (0.5; pass 0.0 for logits); or integer labels (N,).
  Leading axes are flattened: a language model's (B, T, V) logits against (B, T) targets are
  B * T predictions.
- `precision`, `recall`, `f1` follow scikit-learn (`average` 'binary' | 'macro' | 'micro' |
  'weighted' | None, `labels`, `pos_label`, `zero_division` 'warn' | 0 | 1 | nan), and so do
  `confusion_matrix` (rows: true class, columns: predicted) and `roc_auc` (binary, or one-vs-rest
  macro over a score matrix; logits rows are turned into probabilities by a softmax).

The stateful objects (`get("precision")`, `Precision(average=...)`) keep summable counts (a
confusion matrix, sums and counts), so a result over many batches equals the function over
their concatenation, and the counts of several processes add up (`merge`). For a score matrix,
"precision", "recall" and "f1" mean their macro averages over the classes; for binary scores or
labels, the positive class's (`average='binary'`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "AUC", "Accuracy", "BinaryAccuracy", "F1Score", "MeanAbsoluteError", "MeanSquaredError",
    "Metric", "Precision", "R2Score", "Recall", "TopKAccuracy", "accuracy", "binary_accuracy",
    "classification_report", "confusion_matrix", "f1", "get", "mean_absolute_error",
    "mean_squared_error", "precision", "r2", "recall", "roc_auc", "top_k_accuracy",
]

AVERAGES = ("binary", "macro", "micro", "weighted", None)


# --- reading the inputs ---------------------------------------------------------------------------
def _host(a: Any, what: str) -> np.ndarray:
    """A NumPy array from a NumPy/CuPy array, a Tensor or a list."""
    if hasattr(a, "numpy") and not isinstance(a, np.ndarray):
        a = a.numpy()
    elif type(a).__module__.split(".")[0] == "cupy":
        a = a.get()
    out = np.asarray(a)
    if out.dtype == object:
        raise TypeError(f"{what}: expected a numeric array, got {type(a).__name__}")
    return out


def _is_scores(y_pred: np.ndarray) -> bool:
    return y_pred.ndim >= 2 and y_pred.shape[-1] >= 2


def _true_labels(y_true: Any, n_pred: int | None = None, scores: bool = False) -> np.ndarray:
    """Integer labels (N,) from labels or one-hot rows."""
    y = _host(y_true, "y_true")
    if scores and y.ndim >= 2 and y.shape[-1] >= 2 and n_pred is not None \
            and y.size != n_pred:  # one-hot rows (..., C)
        y = y.reshape(-1, y.shape[-1]).argmax(axis=-1)
    elif not scores and y.ndim == 2 and y.shape[1] >= 2:  # one-hot against labels / binary
        y = y.argmax(axis=-1)
    y = y.reshape(-1)
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise ValueError("y_true: class labels must be whole numbers (or one-hot rows)")
        y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise ValueError(f"y_true: class labels must be >= 0, got {int(y.min())}")
    return y.astype(np.int64, copy=False)


def _pred_labels(y_pred: Any, threshold: float = 0.5) -> np.ndarray:
    """Predicted labels (N,): argmax of a score matrix, threshold of binary scores."""
    p = _host(y_pred, "y_pred")
    if _is_scores(p):
        return p.reshape(-1, p.shape[-1]).argmax(axis=-1).astype(np.int64)
    p = p.reshape(-1)
    if np.issubdtype(p.dtype, np.integer) or p.dtype == bool:
        if p.size and p.min() < 0:
            raise ValueError(f"y_pred: class labels must be >= 0, got {int(p.min())}")
        return p.astype(np.int64)
    if np.any(np.isnan(p)):
        raise ValueError("y_pred: holds nan")
    return (p > threshold).astype(np.int64)


def _pair(y_true: Any, y_pred: Any, threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    p = _host(y_pred, "y_pred")
    scores = _is_scores(p)
    n = int(np.prod(p.shape[:-1])) if scores else p.size
    t = _true_labels(y_true, n, scores)
    pred = _pred_labels(p, threshold)
    if t.shape != pred.shape:
        raise ValueError(f"y_true holds {t.size} labels, y_pred {pred.size} predictions "
                         f"(shapes {np.shape(y_true)} and {p.shape})")
    return t, pred


def _weights(sample_weight: Any, n: int) -> np.ndarray | None:
    if sample_weight is None:
        return None
    w = _host(sample_weight, "sample_weight").astype(np.float64).reshape(-1)
    if w.size != n:
        raise ValueError(f"sample_weight holds {w.size} weights for {n} predictions")
    return w


# --- functions ------------------------------------------------------------------------------------
def accuracy(y_true: Any, y_pred: Any, threshold: float = 0.5) -> float:
    """The fraction of predictions equal to the true label (nan for no predictions)."""
    t, p = _pair(y_true, y_pred, threshold)
    return float(np.mean(t == p)) if t.size else math.nan


def binary_accuracy(y_true: Any, y_pred: Any, threshold: float = 0.5) -> float:
    """Accuracy of `y_pred > threshold` against 0/1 labels, element by element (Keras')."""
    t = _host(y_true, "y_true").reshape(-1)
    p = _host(y_pred, "y_pred").reshape(-1)
    if t.size != p.size:
        raise ValueError(f"y_true and y_pred differ in size ({t.size} and {p.size})")
    return float(np.mean((p > threshold) == (t > 0.5))) if t.size else math.nan


def top_k_accuracy(y_true: Any, y_pred: Any, k: int = 5) -> float:
    """The fraction of samples whose true class is among the k highest scores (a true class
    tied at the boundary counts as in)."""
    return _top_k_correct(y_true, y_pred, k).mean() if np.size(y_pred) else math.nan


def _top_k_correct(y_true: Any, y_pred: Any, k: int) -> np.ndarray:
    if k < 1:
        raise ValueError(f"top_k_accuracy: k must be >= 1, got {k}")
    p = _host(y_pred, "y_pred")
    if not _is_scores(p):
        raise ValueError(f"top_k_accuracy: y_pred must be a score matrix (N, C), got {p.shape}")
    p = p.reshape(-1, p.shape[-1])  # (N, C)
    t = _true_labels(y_true, len(p), True)
    if t.size != len(p):
        raise ValueError(f"y_true holds {t.size} labels for {len(p)} score rows")
    if t.size and t.max() >= p.shape[1]:
        raise ValueError(f"y_true: label {int(t.max())} for {p.shape[1]} score columns")
    true_score = p[np.arange(len(p)), t]  # (N,)
    return (p > true_score[:, None]).sum(axis=1) < k


def confusion_matrix(y_true: Any, y_pred: Any, labels: Sequence[int] | None = None,
                     sample_weight: Any = None, threshold: float = 0.5) -> np.ndarray:
    """(C, C) counts: entry [i, j] is the number of samples of true class labels[i] predicted
    as labels[j]. `labels` default: every column of a score matrix, else the sorted labels
    present in y_true or y_pred (scikit-learn's)."""
    t, p = _pair(y_true, y_pred, threshold)
    w = _weights(sample_weight, t.size)
    if labels is None:
        pred = _host(y_pred, "y_pred")
        present = np.union1d(t, p)
        if _is_scores(pred):
            present = np.union1d(np.arange(pred.shape[-1]), present)
        labels = present
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if labels.size == 0 or len(np.unique(labels)) != labels.size:
        raise ValueError(f"confusion_matrix: labels must be distinct and not empty, got "
                         f"{labels.tolist()}")
    index = {int(label): i for i, label in enumerate(labels)}
    keep = np.isin(t, labels) & np.isin(p, labels)
    rows = np.array([index[int(v)] for v in t[keep]], dtype=np.int64)
    cols = np.array([index[int(v)] for v in p[keep]], dtype=np.int64)
    out = np.zeros((labels.size, labels.size), dtype=np.float64 if w is not None else np.int64)
    np.add.at(out, (rows, cols), w[keep] if w is not None else 1)
    return out


def _zero_division_value(zero_division: Any) -> float:
    if isinstance(zero_division, str):
        if zero_division != "warn":
            raise ValueError(f"zero_division must be 'warn', 0, 1 or nan, got {zero_division!r}")
        return 0.0
    value = float(zero_division)
    if not (value in (0.0, 1.0) or math.isnan(value)):
        raise ValueError(f"zero_division must be 'warn', 0, 1 or nan, got {zero_division!r}")
    return value


def _divide(num: np.ndarray, den: np.ndarray, zero_division: Any, what: str) -> np.ndarray:
    value = _zero_division_value(zero_division)
    out = np.full(num.shape, value, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    if zero_division == "warn" and np.any(den == 0):
        warnings.warn(f"{what} is ill-defined and set to 0.0 where a class has no "
                      f"{'predicted' if what == 'precision' else 'true'} samples "
                      "(pass zero_division= to choose the value)", RuntimeWarning, stacklevel=4)
    return out


def _class_counts(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tp, fp, fn) per class of a confusion matrix."""
    tp = np.diag(matrix).astype(np.float64)
    return tp, matrix.sum(axis=0) - tp, matrix.sum(axis=1) - tp


def _prf(which: str, y_true: Any, y_pred: Any, average: str | None, labels: Any,
         pos_label: int, zero_division: Any, sample_weight: Any, threshold: float) -> Any:
    t, p = _pair(y_true, y_pred, threshold)
    present = np.union1d(t, p)
    if average == "binary":
        if present.size > 2 or not np.all(np.isin(present, [0, 1, pos_label])):
            raise ValueError(f"{which}: average='binary' needs two classes, got labels "
                             f"{present.tolist()}; pass average='macro', 'micro' or 'weighted'")
        everything = np.union1d(present, [pos_label])
        matrix = confusion_matrix(t, p, labels=everything, sample_weight=sample_weight)
        k = int(np.searchsorted(everything, pos_label))
        tp, fp, fn = _class_counts(matrix)
        return _scores_from_counts(which, tp[k:k + 1], fp[k:k + 1], fn[k:k + 1],
                                   matrix.sum(axis=1)[k:k + 1], "macro", zero_division)
    chosen = present if labels is None else np.asarray(labels, dtype=np.int64).reshape(-1)
    if chosen.size == 0:
        raise ValueError(f"{which}: no labels to score")
    # the full matrix over every label seen, so that fp/fn count predictions of other labels
    everything = np.union1d(present, chosen)
    matrix = confusion_matrix(t, p, labels=everything, sample_weight=sample_weight)
    pick = np.searchsorted(everything, chosen)
    tp, fp, fn = _class_counts(matrix)
    return _scores_from_counts(which, tp[pick], fp[pick], fn[pick], matrix.sum(axis=1)[pick],
                               average, zero_division)


def _scores_from_counts(which: str, tp: np.ndarray, fp: np.ndarray, fn: np.ndarray,
                        support: np.ndarray, average: str | None, zero_division: Any) -> Any:
    """precision / recall / f1 from per-class counts, averaged as `average` says."""
    if average not in AVERAGES or average == "binary":
        raise ValueError(f"average must be one of {AVERAGES}, got {average!r}")
    if average == "micro":
        tp, fp, fn = tp.sum(keepdims=True), fp.sum(keepdims=True), fn.sum(keepdims=True)
    if which == "precision":
        per = _divide(tp, tp + fp, zero_division, which)
    elif which == "recall":
        per = _divide(tp, tp + fn, zero_division, which)
    else:
        per = _divide(2 * tp, 2 * tp + fp + fn, zero_division, "f1")
    if average == "micro":
        return float(per[0])
    if average is None:
        return per
    keep = ~np.isnan(per)
    if not keep.any():
        return math.nan
    if average == "weighted":  # sklearn's: all weights 0 (no true samples) -> a plain mean
        weights = np.asarray(support, dtype=np.float64)[keep]
        if weights.sum() > 0:
            return float(np.average(per[keep], weights=weights))
    return float(per[keep].mean())  # macro; nan (zero_division=nan) classes left out


def precision(y_true: Any, y_pred: Any, average: str | None = "binary",
              labels: Sequence[int] | None = None, pos_label: int = 1,
              zero_division: Any = "warn", sample_weight: Any = None,
              threshold: float = 0.5) -> Any:
    """tp / (tp + fp), as sklearn.metrics.precision_score (average=None: one per label)."""
    return _prf("precision", y_true, y_pred, average, labels, pos_label, zero_division,
                sample_weight, threshold)


def recall(y_true: Any, y_pred: Any, average: str | None = "binary",
           labels: Sequence[int] | None = None, pos_label: int = 1,
           zero_division: Any = "warn", sample_weight: Any = None,
           threshold: float = 0.5) -> Any:
    """tp / (tp + fn), as sklearn.metrics.recall_score."""
    return _prf("recall", y_true, y_pred, average, labels, pos_label, zero_division,
                sample_weight, threshold)


def f1(y_true: Any, y_pred: Any, average: str | None = "binary",
       labels: Sequence[int] | None = None, pos_label: int = 1, zero_division: Any = "warn",
       sample_weight: Any = None, threshold: float = 0.5) -> Any:
    """2 tp / (2 tp + fp + fn), the harmonic mean of precision and recall, as
    sklearn.metrics.f1_score."""
    return _prf("f1", y_true, y_pred, average, labels, pos_label, zero_division, sample_weight,
                threshold)


def _binary_auc(positive: np.ndarray, score: np.ndarray,
                weight: np.ndarray | None = None) -> float:
    """Area under the ROC curve of `score` for the boolean `positive` (ties count half)."""
    w = np.ones(score.shape) if weight is None else weight
    pos_w, neg_w = w[positive].sum(), w[~positive].sum()
    if pos_w == 0 or neg_w == 0:
        raise ValueError("roc_auc: only one class present in y_true; the ROC AUC is undefined")
    order = np.argsort(score, kind="mergesort")
    s, p, ww = score[order], positive[order], w[order]
    # for each distinct score: negatives strictly below, plus half of those tied
    uniq, start = np.unique(s, return_index=True)
    neg_cum = np.concatenate([[0.0], np.cumsum(np.where(p, 0.0, ww))])
    end = np.append(start[1:], len(s))
    below = neg_cum[start]
    tied = neg_cum[end] - neg_cum[start]
    pos_in = np.add.reduceat(np.where(p, ww, 0.0), start)
    return float(np.sum(pos_in * (below + tied / 2)) / (pos_w * neg_w))


def _as_probabilities(scores: np.ndarray) -> np.ndarray:
    """Rows of probabilities: kept when they already are, else a softmax (logits)."""
    if np.all(scores >= 0) and np.allclose(scores.sum(axis=1), 1.0, atol=1e-4):
        return scores
    shifted = scores - scores.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def roc_auc(y_true: Any, y_score: Any, sample_weight: Any = None) -> float:
    """ROC AUC: binary (scores (N,), (N, 1) or the second column of (N, 2)), or for a score
    matrix of C > 2 classes the one-vs-rest macro average (sklearn's multi_class='ovr')."""
    s = _host(y_score, "y_score").astype(np.float64)
    if np.any(np.isnan(s)):
        raise ValueError("roc_auc: y_score holds nan")
    if s.ndim >= 2 and s.shape[-1] > 2:
        s = _as_probabilities(s.reshape(-1, s.shape[-1]))
        t = _true_labels(y_true, len(s), True)
        if t.size != len(s):
            raise ValueError(f"y_true holds {t.size} labels for {len(s)} score rows")
        w = _weights(sample_weight, t.size)
        if t.size and t.max() >= s.shape[1]:
            raise ValueError(f"y_true: label {int(t.max())} for {s.shape[1]} score columns")
        return float(np.mean([_binary_auc(t == c, s[:, c], w) for c in range(s.shape[1])]))
    if s.ndim >= 2 and s.shape[-1] == 2:
        s = s.reshape(-1, 2)[:, 1]
    s = s.reshape(-1)
    t = _true_labels(y_true, s.size, False)
    if t.size != s.size:
        raise ValueError(f"y_true holds {t.size} labels for {s.size} scores")
    if t.size and t.max() > 1:
        raise ValueError("roc_auc: binary scores need 0/1 labels; pass a score matrix (N, C) "
                         "for more classes")
    return _binary_auc(t == 1, s, _weights(sample_weight, t.size))


def _regression_pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t = _host(y_true, "y_true").astype(np.float64)
    p = _host(y_pred, "y_pred").astype(np.float64)
    if t.size != p.size:
        raise ValueError(f"y_true and y_pred differ in size ({t.shape} and {p.shape})")
    return t.reshape(p.shape) if t.shape != p.shape else t, p


def mean_squared_error(y_true: Any, y_pred: Any) -> float:
    t, p = _regression_pair(y_true, y_pred)
    return float(np.mean((t - p) ** 2)) if t.size else math.nan


def mean_absolute_error(y_true: Any, y_pred: Any) -> float:
    t, p = _regression_pair(y_true, y_pred)
    return float(np.mean(np.abs(t - p))) if t.size else math.nan


def r2(y_true: Any, y_pred: Any) -> float:
    """Coefficient of determination 1 - SS_res / SS_tot (sklearn's r2_score: per output column
    of a 2-D y, then their mean; a constant y_true gives 1.0 when predicted exactly, else 0.0)."""
    t, p = _regression_pair(y_true, y_pred)
    t2, p2 = t.reshape(len(t), -1) if t.ndim else t.reshape(1, 1), p.reshape(len(t), -1) \
        if t.ndim else p.reshape(1, 1)
    n = len(t2)
    return _r2_from_sums(np.full(t2.shape[1], float(n)), t2.sum(axis=0), (t2 * t2).sum(axis=0),
                         ((t2 - p2) ** 2).sum(axis=0), t2)


def _r2_from_sums(count: np.ndarray, sum_y: np.ndarray, sum_y2: np.ndarray,
                  ss_res: np.ndarray, y: np.ndarray | None = None) -> float:
    if not np.any(count):
        return math.nan
    if y is not None:  # exact: around the mean, not from the sums
        ss_tot = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    else:
        ss_tot = np.maximum(sum_y2 - sum_y * sum_y / np.maximum(count, 1), 0.0)
    tiny = 1e-12 * np.maximum(sum_y2, 1.0)
    per = np.where(ss_tot > tiny, 1 - ss_res / np.where(ss_tot > tiny, ss_tot, 1.0),
                   np.where(ss_res <= tiny, 1.0, 0.0))
    return float(per.mean())


# --- stateful metrics -----------------------------------------------------------------------------
class Metric:
    """A metric accumulated over batches: `update_state(y_true, y_pred, sample_weight=None)` with
    host arrays, `result() -> float`, `reset_state()`. `name` is the key it logs under.

    The state is a dict of float64 arrays that add up (`state`), so that `merge(reduce)` can sum
    the states of several processes (arrays of different shapes are zero-padded to the largest
    first); a metric whose state does not add up (AUC) has `summable = False`."""

    summable = True

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"{type(self).__name__}: name must be a non-empty string, got "
                            f"{name!r}")
        self.name = name
        self.state: dict[str, np.ndarray] = {}
        self.reset_state()

    def reset_state(self) -> None:
        self.state = {}

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        raise NotImplementedError

    def result(self) -> float:
        raise NotImplementedError

    def _add(self, key: str, value: np.ndarray | float) -> None:
        value = np.asarray(value, dtype=np.float64)
        old = self.state.get(key)
        if old is None:
            self.state[key] = value.copy()
            return
        if old.shape != value.shape:  # a confusion matrix that met a larger label: pad
            shape = tuple(max(a, b) for a, b in zip(old.shape, value.shape))
            old, value = _pad(old, shape), _pad(value, shape)
        self.state[key] = old + value

    def merge(self, reduce: Callable[[dict[str, float], str], dict[str, float]]) -> None:
        """Sum the state over processes with `reduce(values, op)` (e.g. a distributed
        all_reduce_scalars): shapes first (their max), then the padded values."""
        if not self.summable:
            raise ValueError(f"metric {self.name!r} ({type(self).__name__}) keeps every score; "
                             "its state cannot be summed over processes")
        shapes = reduce({f"{k}/{i}": float(d) for k, v in self.state.items()
                         for i, d in enumerate(v.shape)}, "max")
        flat: dict[str, float] = {}
        for key, value in self.state.items():
            shape = tuple(int(shapes[f"{key}/{i}"]) for i in range(value.ndim))
            padded = _pad(value, shape)
            self.state[key] = padded
            flat.update({f"{key}/{j:08d}": float(x) for j, x in enumerate(padded.reshape(-1))})
        summed = reduce(flat, "sum")
        for key, value in self.state.items():
            self.state[key] = np.array([summed[f"{key}/{j:08d}"] for j in range(value.size)]
                                       ).reshape(value.shape)

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> float:
        """One-off: reset, update with this batch, return the result."""
        self.reset_state()
        self.update_state(y_true, y_pred, sample_weight)
        return self.result()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def _pad(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if a.shape == shape:
        return a
    out = np.zeros(shape, dtype=a.dtype)
    out[tuple(slice(0, d) for d in a.shape)] = a
    return out


class _MeanOf(Metric):
    """A weighted mean of a per-sample value."""

    def _per_sample(self, y_true: Any, y_pred: Any) -> np.ndarray:
        raise NotImplementedError

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        values = self._per_sample(y_true, y_pred).astype(np.float64).reshape(-1)
        w = _weights(sample_weight, values.size)
        self._add("total", values.sum() if w is None else (values * w).sum())
        self._add("count", values.size if w is None else w.sum())

    def result(self) -> float:
        count = float(self.state.get("count", 0.0))
        return float(self.state["total"]) / count if count else math.nan


class Accuracy(_MeanOf):
    """The fraction of correct predictions (argmax of a score matrix, threshold of binary
    scores; see the module's input rules)."""

    def __init__(self, name: str = "accuracy", threshold: float = 0.5) -> None:
        self.threshold = threshold
        super().__init__(name)

    def _per_sample(self, y_true: Any, y_pred: Any) -> np.ndarray:
        t, p = _pair(y_true, y_pred, self.threshold)
        return t == p


class BinaryAccuracy(_MeanOf):
    """Element-wise accuracy of `y_pred > threshold` against 0/1 targets (multi-label too)."""

    def __init__(self, name: str = "binary_accuracy", threshold: float = 0.5) -> None:
        self.threshold = threshold
        super().__init__(name)

    def _per_sample(self, y_true: Any, y_pred: Any) -> np.ndarray:
        t = _host(y_true, "y_true").reshape(-1)
        p = _host(y_pred, "y_pred").reshape(-1)
        if t.size != p.size:
            raise ValueError(f"y_true and y_pred differ in size ({t.size} and {p.size})")
        return (p > self.threshold) == (t > 0.5)


class TopKAccuracy(_MeanOf):
    """Whether the true class is among the k highest scores."""

    def __init__(self, k: int = 5, name: str = "top_k_accuracy") -> None:
        if k < 1:
            raise ValueError(f"TopKAccuracy: k must be >= 1, got {k}")
        self.k = k
        super().__init__(name)

    def _per_sample(self, y_true: Any, y_pred: Any) -> np.ndarray:
        return _top_k_correct(y_true, y_pred, self.k)


class MeanSquaredError(_MeanOf):
    def __init__(self, name: str = "mean_squared_error") -> None:
        super().__init__(name)

    def _per_sample(self, y_true: Any, y_pred: Any) -> np.ndarray:
        t, p = _regression_pair(y_true, y_pred)
        return (t - p) ** 2


class MeanAbsoluteError(_MeanOf):
    def __init__(self, name: str = "mean_absolute_error") -> None:
        super().__init__(name)

    def _per_sample(self, y_true: Any, y_pred: Any) -> np.ndarray:
        t, p = _regression_pair(y_true, y_pred)
        return np.abs(t - p)


class R2Score(Metric):
    """R^2 over everything seen, from running sums per output column (sklearn's r2_score
    'uniform_average' over columns)."""

    def __init__(self, name: str = "r2") -> None:
        super().__init__(name)

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        t, p = _regression_pair(y_true, y_pred)
        if t.size == 0:
            return
        t = t.reshape(len(t), -1) if t.ndim else t.reshape(1, 1)  # (N, outputs)
        p = p.reshape(t.shape)
        w = _weights(sample_weight, len(t))
        w = np.ones(len(t)) if w is None else w
        self._add("count", np.full(t.shape[1], w.sum()))
        self._add("sum_y", (w[:, None] * t).sum(axis=0))
        self._add("sum_y2", (w[:, None] * t * t).sum(axis=0))
        self._add("ss_res", (w[:, None] * (t - p) ** 2).sum(axis=0))

    def result(self) -> float:
        if "count" not in self.state:
            return math.nan
        s = self.state
        return _r2_from_sums(s["count"], s["sum_y"], s["sum_y2"], s["ss_res"])


class _FromConfusion(Metric):
    """precision / recall / f1 from a running confusion matrix.

    `average`: 'auto' (the default) is 'macro' once a score matrix (N, C >= 2) was seen and
    'binary' (class 1) for binary scores or labels; or 'binary', 'macro', 'micro', 'weighted'.
    `class_id`: the one-vs-rest score of that class alone (overrides `average`).
    `num_classes`: the size of the matrix from the start (else grown to the largest label)."""

    which = ""

    def __init__(self, average: str = "auto", class_id: int | None = None,
                 num_classes: int | None = None, threshold: float = 0.5,
                 zero_division: float = 0.0, name: str | None = None) -> None:
        if average not in ("auto", "binary", "macro", "micro", "weighted"):
            raise ValueError(f"{type(self).__name__}: average must be 'auto', 'binary', "
                             f"'macro', 'micro' or 'weighted', got {average!r}")
        if class_id is not None and class_id < 0:
            raise ValueError(f"{type(self).__name__}: class_id must be >= 0, got {class_id}")
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"{type(self).__name__}: num_classes must be >= 1, got "
                             f"{num_classes}")
        _zero_division_value(zero_division)
        if zero_division == "warn":
            raise ValueError(f"{type(self).__name__}: zero_division must be 0, 1 or nan")
        self.average, self.class_id, self.num_classes = average, class_id, num_classes
        self.threshold, self.zero_division = threshold, float(zero_division)
        super().__init__(name or self.which)

    def reset_state(self) -> None:
        super().reset_state()
        n = self.num_classes or 0
        self.state["matrix"] = np.zeros((n, n))
        self.state["score_columns"] = np.zeros(())  # > 0 once a score matrix was seen

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        p = _host(y_pred, "y_pred")
        t, pred = _pair(y_true, p, self.threshold)
        w = _weights(sample_weight, t.size)
        n = max(int(t.max(initial=-1)), int(pred.max(initial=-1)), 1) + 1
        if _is_scores(p):
            n = max(n, p.shape[-1])
            self._add("score_columns", 1.0)
        matrix = np.zeros((n, n))
        np.add.at(matrix, (t, pred), 1.0 if w is None else w)
        self._add("matrix", matrix)

    def _average(self) -> str:
        if self.average != "auto":
            return self.average
        return "macro" if float(self.state["score_columns"]) > 0 else "binary"

    def result(self) -> float:
        matrix = self.state["matrix"]
        if matrix.sum() == 0:
            return math.nan
        tp, fp, fn = _class_counts(matrix)
        support = matrix.sum(axis=1)
        if self.class_id is not None or self._average() == "binary":
            k = 1 if self.class_id is None else self.class_id
            if k >= len(tp):
                return _scores_from_counts(self.which, np.zeros(1), np.zeros(1),
                                           np.zeros(1), np.zeros(1), "macro",
                                           self.zero_division)
            return _scores_from_counts(self.which, tp[k:k + 1], fp[k:k + 1], fn[k:k + 1],
                                       support[k:k + 1], "macro", self.zero_division)
        if self._average() in ("macro", "weighted") and self.num_classes is None:
            present = (support + matrix.sum(axis=0)) > 0  # sklearn: the labels present
            tp, fp, fn, support = tp[present], fp[present], fn[present], support[present]
        return _scores_from_counts(self.which, tp, fp, fn, support, self._average(),
                                   self.zero_division)


class Precision(_FromConfusion):
    """tp / (tp + fp); see _FromConfusion for `average` and `class_id`."""

    which = "precision"


class Recall(_FromConfusion):
    """tp / (tp + fn); see _FromConfusion for `average` and `class_id`."""

    which = "recall"


class F1Score(_FromConfusion):
    """2 tp / (2 tp + fp + fn); see _FromConfusion for `average` and `class_id`."""

    which = "f1"


class AUC(Metric):
    """ROC AUC over every score seen (exact, as `roc_auc`; it keeps the scores, so it cannot be
    summed over processes)."""

    summable = False

    def __init__(self, name: str = "auc") -> None:
        super().__init__(name)

    def reset_state(self) -> None:
        super().reset_state()
        self.true: list[np.ndarray] = []
        self.scores: list[np.ndarray] = []
        self.weights: list[np.ndarray] = []

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        s = _host(y_pred, "y_pred").astype(np.float64)
        s = s.reshape(-1, s.shape[-1]) if s.ndim >= 2 and s.shape[-1] >= 2 else s.reshape(-1)
        scores = s.ndim == 2
        t = _true_labels(y_true, len(s), scores)
        if t.size != len(s):
            raise ValueError(f"y_true holds {t.size} labels for {len(s)} scores")
        w = _weights(sample_weight, t.size)
        self.true.append(t)
        self.scores.append(s)
        self.weights.append(np.ones(t.size) if w is None else w)

    def result(self) -> float:
        if not self.true:
            return math.nan
        return roc_auc(np.concatenate(self.true), np.concatenate(self.scores),
                       np.concatenate(self.weights))


_FACTORIES: dict[str, Callable[[str], Metric]] = {
    "accuracy": lambda name: Accuracy(name),
    "acc": lambda name: Accuracy(name),
    "binary_accuracy": lambda name: BinaryAccuracy(name),
    "precision": lambda name: Precision(name=name),
    "recall": lambda name: Recall(name=name),
    "f1": lambda name: F1Score(name=name),
    "f1_score": lambda name: F1Score(name=name),
    "top_k_accuracy": lambda name: TopKAccuracy(name=name),
    "top_k_categorical_accuracy": lambda name: TopKAccuracy(name=name),
    "auc": lambda name: AUC(name),
    "mse": lambda name: MeanSquaredError(name),
    "mean_squared_error": lambda name: MeanSquaredError(name),
    "mae": lambda name: MeanAbsoluteError(name),
    "mean_absolute_error": lambda name: MeanAbsoluteError(name),
    "r2": lambda name: R2Score(name),
    "r2_score": lambda name: R2Score(name),
}


def get(identifier: str | Metric) -> Metric:
    """A fresh Metric for a name ("accuracy", "precision", "recall", "f1", "top_k_accuracy",
    "auc", "mse", "mae", "r2", and Keras' long names), named as written; a Metric is returned
    as it is."""
    if isinstance(identifier, Metric):
        return identifier
    if not isinstance(identifier, str):
        raise TypeError(f"metrics.get: expected a metric name or a Metric, got "
                        f"{type(identifier).__name__}")
    factory = _FACTORIES.get(identifier)
    if factory is None:
        raise ValueError(f"unknown metric {identifier!r}; known: {sorted(_FACTORIES)}")
    return factory(identifier)


def classification_report(y_true: Any, y_pred: Any, labels: Sequence[Any] | None = None,
                          digits: int = 4) -> str:
    """Per-class precision, recall, F1 and support, their macro and support-weighted averages
    and the accuracy, as text (scikit-learn's layout), then the confusion matrix (rows: true
    class, columns: predicted). `labels`: names for the classes 0..C-1."""
    t, p = _pair(y_true, y_pred)
    pred = _host(y_pred, "y_pred")
    n = max(int(t.max(initial=0)), int(p.max(initial=0)),
            pred.shape[-1] - 1 if _is_scores(pred) else 0) + 1
    if labels is not None and len(labels) < n:
        raise ValueError(f"classification_report: {len(labels)} label names for {n} classes")
    names = [str(v) for v in (labels if labels is not None else range(n))][:n]
    matrix = confusion_matrix(t, p, labels=range(n))
    tp, fp, fn = _class_counts(matrix)
    support = matrix.sum(axis=1)
    rows = {which: _scores_from_counts(which, tp, fp, fn, support, None, 0.0)
            for which in ("precision", "recall", "f1")}
    width = max(12, *(len(name) for name in names))
    head = f"{'':>{width}} {'precision':>10} {'recall':>10} {'f1-score':>10} {'support':>10}"
    lines = [head, ""]
    for i, name in enumerate(names):
        lines.append(f"{name:>{width}} {rows['precision'][i]:>10.{digits}f} "
                     f"{rows['recall'][i]:>10.{digits}f} {rows['f1'][i]:>10.{digits}f} "
                     f"{int(support[i]):>10}")
    total = int(support.sum())
    accuracy = float(tp.sum() / total) if total else math.nan
    lines += ["", f"{'accuracy':>{width}} {'':>10} {'':>10} {accuracy:>10.{digits}f} "
              f"{total:>10}"]
    for average in ("macro", "weighted"):
        values = [_scores_from_counts(which, tp, fp, fn, support, average, 0.0)
                  for which in ("precision", "recall", "f1")]
        lines.append(f"{average + ' avg':>{width}} " + " ".join(
            f"{v:>10.{digits}f}" for v in values) + f" {total:>10}")
    cell = max(5, len(str(int(matrix.max(initial=0)))) + 1, *(len(name) + 1 for name in names))
    lines += ["", "confusion matrix (rows: true, columns: predicted)",
              f"{'':>{width}}" + "".join(f"{name:>{cell}}" for name in names)]
    for i, name in enumerate(names):
        lines.append(f"{name:>{width}}" + "".join(f"{int(v):>{cell}}" for v in matrix[i]))
    return "\n".join(lines)
