"""Error analysis and latency tables (distrinews.analysis): hand-checked counts, and agreement with training's eval."""

from __future__ import annotations

import dataclasses
import json

import matplotlib
import pytest

from distrinews import analysis
from distrinews.config import PRESETS
from distrinews.data import read_news_csv
from distrinews.inference import NewsClassifier, Prediction
from distrinews.labels import LABEL_NAMES

matplotlib.use("Agg")

# rows = true topic, columns = predicted: World->Sports 3, Business->Sci/Tech 5, Sci/Tech->Business 1
CONFUSION = [[10, 3, 0, 0],
             [0, 12, 0, 0],
             [0, 0, 7, 5],
             [0, 0, 1, 9]]


def prediction(label: str, confidence: float) -> Prediction:
    rest = (1 - confidence) / 3
    return Prediction(label, {name: confidence if name == label else rest for name in LABEL_NAMES}, False)


def test_confusion_matrix_counts_true_rows_and_predicted_columns():
    labels = [0, 0, 1, 2, 3, 3]
    predictions = [prediction("World", 0.9), prediction("Sports", 0.8), "Sports", "Sci/Tech",
                   prediction("Sci/Tech", 0.7), "Business"]
    assert analysis.confusion_matrix(labels, predictions) == [[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1],
                                                              [0, 0, 1, 1]]


def test_confusion_matrix_rejects_mismatched_lengths_and_unknown_labels():
    with pytest.raises(ValueError, match="3 labels but 2 predictions"):
        analysis.confusion_matrix([0, 1, 2], ["World", "Sports"])
    with pytest.raises(ValueError, match="unknown label 'Weather'"):
        analysis.confusion_matrix([0], ["Weather"])


def test_most_confused_ranks_off_diagonal_cells_with_their_reverse():
    table = analysis.most_confused(CONFUSION)
    assert list(zip(table["true topic"], table["predicted as"], table["examples"])) == [
        ("Business", "Sci/Tech", 5), ("World", "Sports", 3), ("Sci/Tech", "Business", 1)]  # no zeros, no diagonal
    first = table.iloc[0]
    assert first["% of true topic"] == pytest.approx(100 * 5 / 12, abs=0.05)
    assert first["the reverse (examples)"] == 1 and table.iloc[1]["the reverse (examples)"] == 0
    assert len(analysis.most_confused(CONFUSION, top=2)) == 2


def test_most_confused_of_a_perfect_model_is_empty():
    perfect = [[5 if i == j else 0 for j in range(4)] for i in range(4)]
    assert analysis.most_confused(perfect).empty


def test_misclassified_lists_only_errors_most_confident_first():
    texts = ["right", "wrong but unsure", "wrong and sure " + "x" * 200, "also right"]
    labels = [0, 1, 2, 3]
    predictions = [prediction("World", 0.9), prediction("World", 0.4), prediction("Sports", 0.95),
                   prediction("Sci/Tech", 0.6)]
    table = analysis.misclassified(texts, labels, predictions, width=40)
    assert list(table["true topic"]) == ["Business", "Sports"]  # 0.95 before 0.4; right answers left out
    assert list(table["predicted"]) == ["Sports", "World"]
    assert list(table["p(predicted)"]) == [0.95, 0.4]
    assert table.iloc[1]["p(true topic)"] == pytest.approx(0.6 / 3, abs=1e-3)
    assert len(table.iloc[0]["text"]) == 40 and table.iloc[0]["text"].endswith("...")
    assert len(analysis.misclassified(texts, labels, predictions, n=1)) == 1
    with pytest.raises(ValueError, match="differ in length"):
        analysis.misclassified(texts, labels[:2], predictions)


def test_per_class_metrics_match_a_hand_count():
    table = analysis.per_class_metrics(CONFUSION)
    assert list(table.index) == list(LABEL_NAMES)
    business = table.loc["Business"]
    assert business["precision"] == pytest.approx(7 / 8, abs=1e-3)  # column: 7 right of 8 predicted Business
    assert business["recall"] == pytest.approx(7 / 12, abs=1e-3)  # row: 7 right of 12 true Business
    assert business["f1"] == pytest.approx(2 * (7 / 8) * (7 / 12) / (7 / 8 + 7 / 12), abs=1e-3)
    assert list(table["support"]) == [13, 12, 12, 10]
    assert business["most often read as"] == "Sci/Tech (5)" and table.loc["Sports", "most often read as"] == "-"


REPORT = {"model": "tiny", "runs": 5, "batch_size": 32, "cpu_threads": 2,
          "pipeline_p50_ms": 40.0, "pipeline_p95_ms": 60.0, "pipeline_texts_per_s": 100.0,
          "fp32_p50_ms": 30.0, "fp32_p95_ms": 45.0, "fp32_texts_per_s": 150.0,
          "optimized_p50_ms": 10.0, "optimized_p95_ms": 20.0, "optimized_texts_per_s": 400.0}


def test_latency_table_reads_every_variant_and_the_ratio_to_the_pipeline():
    table = analysis.latency_table(REPORT)
    assert list(table.index) == ["transformers pipeline (fp32)", "NewsClassifier fp32",
                                 "NewsClassifier default CPU path"]
    assert list(table["p50 ms (one text)"]) == [40.0, 30.0, 10.0]
    assert list(table["p95 ms (one text)"]) == [60.0, 45.0, 20.0]
    assert list(table["texts/s (batch of 32)"]) == [100.0, 150.0, 400.0]
    assert list(table["p50 / pipeline p50"]) == [1.0, 0.75, 0.25]
    figure = analysis.plot_latency(table)
    axes = figure.axes[0]
    assert axes.get_title() and "ms" in axes.get_xlabel() and len(axes.patches) == 6


def test_latency_table_rejects_something_else_with_a_hint():
    with pytest.raises(KeyError, match="benchmark_inference"):
        analysis.latency_table({"fp32_accuracy": 0.9})


def test_write_split_csv_round_trips_through_read_news_csv(tmp_path):
    from distrinews.data import NewsSplit

    texts = ('Plain headline', 'Commas, "quotes" and\na newline', 'Ünïcödé ✓')
    path = analysis.write_split_csv(NewsSplit("test", texts, (0, 2, 3)), tmp_path / "sub" / "test.csv")
    read_texts, read_labels, skipped = read_news_csv(path)
    assert read_texts == list(texts) and read_labels == [0, 2, 3] and skipped == 0


@pytest.fixture
def smoke_checkpoint_config(tmp_path):
    """A folder holding only the smoke preset's saved config, as a checkpoint/ has it."""
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    PRESETS["smoke"].save(folder / "distrinews_config.json")
    return folder


def test_load_test_split_rebuilds_the_runs_test_split_and_subsets_it(smoke_checkpoint_config):
    quiet = lambda *_: None  # noqa: E731
    full = analysis.load_test_split(smoke_checkpoint_config, log=quiet)
    assert len(full) == PRESETS["smoke"].synthetic_test_size and set(full.labels) == {0, 1, 2, 3}
    subset = analysis.load_test_split(smoke_checkpoint_config, max_rows=50, log=quiet)
    pairs = set(zip(full.texts, full.labels))
    assert len(subset) == 50 and set(zip(subset.texts, subset.labels)) <= pairs  # texts keep their labels
    assert subset == analysis.load_test_split(smoke_checkpoint_config, max_rows=50, log=quiet)  # seeded
    assert subset.texts != analysis.load_test_split(smoke_checkpoint_config, max_rows=50, seed=1, log=quiet).texts
    with pytest.raises(ValueError, match="at least 1"):
        analysis.load_test_split(smoke_checkpoint_config, max_rows=0, log=quiet)


def test_load_test_split_reads_the_runs_test_file(tmp_path):
    from distrinews.data import NewsSplit

    test_file = analysis.write_split_csv(NewsSplit("test", ("a b", "c d", "e f"), (3, 1, 0)), tmp_path / "t.csv")
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    config = dataclasses.replace(PRESETS["smoke"], data_source="files", train_files=(str(test_file),),
                                 test_file=str(test_file))
    config.save(folder / "distrinews_config.json")
    split = analysis.load_test_split(folder)
    assert split.texts == ("a b", "c d", "e f") and split.labels == (3, 1, 0)


def test_load_test_split_without_a_saved_config_says_what_to_pass(tmp_path):
    with pytest.raises(FileNotFoundError, match="distrinews train"):
        analysis.load_test_split(tmp_path)


def test_confusion_of_fp32_predictions_matches_the_runs_own_evaluation(smoke_run):
    """The rebuilt split and NewsClassifier's fp32 path reproduce eval.json: the same rows, the same answers."""
    checkpoint = smoke_run / "checkpoint"
    test = analysis.load_test_split(checkpoint, log=lambda *_: None)
    predictions = NewsClassifier.load(str(checkpoint), optimize="none").predict(list(test.texts))
    confusion = analysis.confusion_matrix(test.labels, predictions)
    expected = json.loads((smoke_run / "eval.json").read_text())["confusion_matrix"]
    assert [sum(row) for row in confusion] == [sum(row) for row in expected]  # same rows, same labels
    # Padding differs between the two paths, so a near-tie could flip; allow one example at most.
    assert sum(abs(a - b) for r, e in zip(confusion, expected) for a, b in zip(r, e)) <= 2
    table = analysis.per_class_metrics(confusion)
    assert (table["recall"] > 0.5).all()  # the smoke model learned every topic (~0.93 accuracy overall)
