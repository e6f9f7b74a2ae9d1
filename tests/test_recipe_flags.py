"""The recipes' --patience / --early-stopping-metric / --plot / --report flags and their progress
display, run in-process through `tinygrad_lab.cli.main` at tiny sizes."""

from __future__ import annotations

import io
import sys

import pytest
from matplotlib import image as mpimg

from tinygrad_lab import cli
from tinygrad_lab.recipes import reporting

MLP = ["train", "mnist-mlp", "--epochs", "3", "--limit", "300", "--batch-size", "64",
       "--hidden", "16"]
CNN = ["train", "mnist-cnn", "--epochs", "1", "--limit", "64", "--batch-size", "32"]
LSTM = ["train", "shakespeare-lstm", "--epochs", "3", "--steps-per-epoch", "2", "--batch-size",
        "4", "--seq-len", "8", "--embed", "8", "--hidden", "16", "--eval-batches", "1",
        "--sample-length", "0", "--warmup", "1"]
GPT = ["train", "shakespeare-gpt", "--steps", "8", "--batch-size", "4", "--context", "16",
       "--d-model", "16", "--heads", "2", "--layers", "1", "--eval-every", "2",
       "--eval-batches", "1", "--warmup", "2"]


def _real_png(path) -> None:
    img = mpimg.imread(path)
    assert img.ndim == 3 and min(img.shape[:2]) >= 200
    assert float(img[..., :3].std()) > 0.02


def test_mnist_mlp_early_stopping_report_and_plots(tmp_path, capsys):
    plot = tmp_path / "mlp.png"
    assert cli.main([*MLP, "--patience", "0", "--early-stopping-metric", "val_accuracy",
                     "--report", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "restoring the weights of the best epoch" in out
    assert "precision" in out and "f1-score" in out and "macro avg" in out
    assert "confusion matrix (rows: true, columns: predicted)" in out
    lines = out.splitlines()
    start = lines.index("confusion matrix (rows: true, columns: predicted)") + 2
    matrix_rows = lines[start:start + 10]
    assert sum(int(v) for line in matrix_rows for v in line.split()[1:]) == 10000  # test set
    _real_png(plot)
    _real_png(reporting.confusion_path(plot))


def test_mnist_cnn_report_and_validation_split(tmp_path, capsys):
    plot = tmp_path / "cnn.png"
    assert cli.main([*CNN, "--patience", "1", "--report", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "val accuracy" in out  # --patience holds out 10 percent for validation
    assert "weighted avg" in out and "confusion matrix written to" in out
    _real_png(plot)
    _real_png(tmp_path / "cnn-confusion.png")


def test_lstm_stops_early_and_prints_plain_lines_without_a_terminal(tmp_path, capsys):
    plot = tmp_path / "lstm.png"
    assert cli.main([*LSTM, "--patience", "0", "--plot", str(plot)]) == 0
    captured = capsys.readouterr()
    epochs = [line for line in captured.out.splitlines() if line.startswith("epoch ")]
    assert 2 <= len(epochs) <= 3 and "it/s" not in captured.err and "step/s" not in captured.err
    _real_png(plot)


def test_gpt_shows_a_progress_bar_on_a_terminal(tmp_path, capsys, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert cli.main([*GPT, "--patience", "1", "--plot", str(tmp_path / "gpt.png")]) == 0
    bar = terminal.getvalue()
    assert "8/8" in bar or "/8 [" in bar  # steps done / total
    assert "loss=" in bar and "tokens/s=" in bar and "<" in bar  # ETA
    out = capsys.readouterr().out
    assert "step      2: train loss" in out  # the evaluation lines still print
    _real_png(tmp_path / "gpt.png")


@pytest.mark.parametrize("argv, words", [
    ([*LSTM, "--patience", "-1"], "--patience must be >= 0"),
    ([*LSTM, "--patience", "1", "--early-stopping-metric", "val_accuracy"],
     "'val_accuracy' is not in the logs; available: loss"),
    ([*LSTM, "--patience", "1", "--early-stopping-metric", "wobble"], "mode='min'"),
])
def test_bad_flags_are_one_line_errors(argv, words, capsys):
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err


def test_plot_path_is_checked_before_any_data_loads(tmp_path, capsys, monkeypatch):
    from tinygrad_lab import datasets

    def no_data(*args, **kwargs):
        raise AssertionError("data loaded before --plot was checked")

    monkeypatch.setattr(datasets, "load_mnist", no_data)
    (tmp_path / "a-file").write_text("x")
    assert cli.main([*CNN, "--plot", str(tmp_path / "a-file" / "c.png")]) == 1
    assert "a-file" in capsys.readouterr().err


def test_confusion_path_sits_beside_the_curves():
    assert str(reporting.confusion_path("runs/curves.png")) == "runs/curves-confusion.png"


def test_plot_without_matplotlib_is_one_line_before_training(tmp_path, capsys, monkeypatch):
    """Without the `plot` extra, --plot (and `explain`) stop before any training, in one line
    naming the extra, with no traceback."""
    for name in ("matplotlib", "matplotlib.figure"):
        monkeypatch.setitem(sys.modules, name, None)  # `import matplotlib.figure` raises
    assert cli.main([*MLP, "--plot", str(tmp_path / "curves.png")]) == 1
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [
        "tinygrad-lab: error: --plot pictures need matplotlib: pip install 'tinygrad_lab[plot]'"]
    assert "Epoch" not in captured.out and not (tmp_path / "curves.png").exists()
