"""distrinews.explore: the tables, pictures and widget of notebooks 00 to 03, checked against hand-computed values."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch

from distrinews import explore
from distrinews.batching import TokenizedSplit, tokenize_split
from distrinews.course import NOTEBOOKS
from distrinews.data import NewsData, NewsSplit, load_news
from distrinews.evaluation import metrics_from_confusion
from distrinews.labels import LABEL_NAMES
from distrinews.modeling import build_model_and_tokenizer, count_parameters

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def tiny():
    model, tokenizer = build_model_and_tokenizer("tiny", seed=0)
    return model, tokenizer


@pytest.fixture(scope="module")
def news():
    return load_news("synthetic", synthetic_train_size=200, synthetic_test_size=40, val_fraction=0.25,
                     log=lambda *_: None)


def split_of_lengths(lengths: list[int]) -> TokenizedSplit:
    """A tokenized split whose texts have exactly these token counts (ids are placeholders)."""
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return TokenizedSplit(np.ones(offsets[-1], dtype=np.int32), offsets, np.zeros(len(lengths), dtype=np.int64))


def labelled(ax) -> bool:
    return bool(ax.get_title() and ax.get_xlabel() and ax.get_ylabel())


# ---- 00 --------------------------------------------------------------------------------------------


def test_course_outline_lists_every_notebook_in_order():
    table = explore.course_outline()
    assert list(table.index) == [nb.filename for nb in NOTEBOOKS]
    assert list(table["title"]) == [nb.title for nb in NOTEBOOKS]
    assert list(table["GPUs on Kaggle"]) == [nb.gpus for nb in NOTEBOOKS]


def test_gpu_table_is_empty_with_its_columns_when_no_gpu_is_visible():
    table = explore.gpu_table({"gpus": []})
    assert table.empty and list(table.columns) == explore.GPU_COLUMNS


def test_gpu_table_separates_emulated_bf16_from_the_hardware_without_asking_cuda(monkeypatch):
    # A T4 as the child-process probe describes it: bf16 "supported" by emulation only, and the library picks
    # fp16. The table only reads that answer: a CUDA call here would open a context in the notebook's kernel.
    for name in ("device", "is_bf16_supported", "get_device_properties", "current_device", "init"):
        monkeypatch.setattr(torch.cuda, name, lambda *a, **k: pytest.fail("gpu_table called torch.cuda"))
    t4 = {"index": 0, "name": "Tesla T4", "capability": "7.5", "memory_gib": 14.7, "precision": "fp16",
          "bf16_supported": True, "bf16_native": False}
    row = explore.gpu_table({"gpus": [t4]}).loc[0]
    assert row["torch.cuda.is_bf16_supported()"] and not row["bf16 in hardware (capability >= 8.0)"]
    assert row["training precision (library)"] == "fp16" and row["compute capability"] == "7.5"


# ---- 01 --------------------------------------------------------------------------------------------


def test_news_frame_names_topics_and_counts_words():
    split = NewsSplit("train", ("Stocks fell today", "Yankees win"), (2, 1))
    frame = explore.news_frame(split)
    assert list(frame["topic"]) == ["Business", "Sports"]
    assert list(frame["words"]) == [3, 2] and list(frame["characters"]) == [17, 11]
    assert list(frame["topic"].cat.categories) == list(LABEL_NAMES)


def test_class_balance_counts_every_split_and_sums_to_its_size(news):
    table = explore.class_balance(news)
    for split in (news.train, news.validation, news.test):
        counts = [split.labels.count(i) for i in range(len(LABEL_NAMES))]
        assert list(table.loc[list(LABEL_NAMES), split.name]) == counts
        assert table.loc["total", split.name] == len(split)
        assert table.loc[list(LABEL_NAMES), f"{split.name} %"].sum() == pytest.approx(100, abs=0.2)


def test_class_balance_shows_a_skewed_split():
    skewed = NewsSplit("train", ("a",) * 4, (0, 0, 0, 3))
    data = NewsData(train=skewed, test=NewsSplit("test", ("b",), (1,)), validation=None, source="test")
    table = explore.class_balance(data)
    assert table.loc["World", "train %"] == 75.0 and table.loc["Sports", "train"] == 0
    assert "validation" not in table.columns


def test_token_lengths_count_untruncated_tokens_with_special_tokens(tiny):
    _, tokenizer = tiny
    texts = ["oil prices", "the yankees won the world series " * 20]
    lengths = explore.token_lengths(tokenizer, texts)
    assert list(lengths) == [len(tokenizer(t)["input_ids"]) for t in texts]
    assert lengths[0] == len(tokenizer.tokenize("oil prices")) + 2  # [CLS] and [SEP]
    assert lengths[1] > 64  # not cut: the point is to see how many texts max_length would truncate


def test_length_summary_counts_the_texts_max_length_would_cut():
    summary = explore.length_summary(np.array([10, 20, 30, 100]), max_length=64)
    assert summary["longer than 64 (truncated)"] == 1 and summary["truncated %"] == 25.0
    assert summary["mean"] == 40.0 and summary["median"] == 25.0 and summary["longest"] == 100


def test_padding_waste_matches_hand_counted_batches():
    # Two short and two long texts in batches of two: padding to 10 processes 4 x 10 tokens; grouping puts the
    # long pair and the short pair together, so it processes exactly the 20 real tokens.
    table = explore.padding_waste(split_of_lengths([2, 8, 2, 8]), batch_size=2, max_length=10, pad_id=0)
    assert list(table.index) == list(explore.STRATEGIES)
    assert (table["real tokens"] == 20).all()
    assert table.loc["max_length", "tokens processed"] == 40 and table.loc["max_length", "padding %"] == 50.0
    assert table.loc["grouped", "tokens processed"] == 20 and table.loc["grouped", "padding tokens"] == 0
    assert 20 <= table.loc["dynamic", "tokens processed"] <= 32  # random pairs: (2,8)+(2,8) = 32 at worst
    assert (table["padding tokens"] == table["tokens processed"] - table["real tokens"]).all()


def test_padding_waste_orders_the_strategies_on_synthetic_news(tiny, news):
    _, tokenizer = tiny
    tokenized = tokenize_split(tokenizer, news.train, 64, use_cache=False)
    table = explore.padding_waste(tokenized, 16, 64, tokenizer.pad_token_id)
    assert table.loc["max_length", "tokens processed"] == len(news.train) * 64
    processed = table["tokens processed"]
    assert processed["grouped"] < processed["dynamic"] < processed["max_length"]
    assert table.loc["grouped", "processed per real token"] < 1.1


def test_batch_layouts_mark_real_padding_and_skipped_positions():
    layouts = explore.batch_layouts(split_of_lengths([2, 8, 2, 8]), batch_size=2, max_length=10, pad_id=0)
    assert set(layouts) == set(explore.STRATEGIES)
    for grid in layouts.values():
        assert grid.shape == (2, 10)
    assert (layouts["max_length"] > 0).all()  # every position up to max_length is computed
    grouped = layouts["grouped"]
    assert (grouped == 1).sum() == 0  # similar lengths: no padding
    assert (grouped == 2).sum() in (4, 16) and (grouped == 0).sum() == 20 - (grouped == 2).sum()


def test_example_browser_follows_the_topic_and_the_slider():
    split = NewsSplit("train", ("World one", "Sports one", "Sports <two>", "Business one"), (0, 1, 1, 2))
    topic, number, view = explore.example_browser(explore.news_frame(split)).children
    assert "World one" in view.value
    topic.value = "Sports"
    assert number.max == 1 and "Sports one" in view.value and "1 of 2" in view.value
    number.value = 1
    assert "Sports &lt;two&gt;" in view.value  # texts are escaped, not rendered as HTML
    topic.value = "Sci/Tech"
    assert "no Sci/Tech examples" in view.value


def test_examples_per_topic_draws_the_same_number_from_each(news):
    picked = explore.examples_per_topic(explore.news_frame(news.train), per_topic=3)
    assert picked["topic"].value_counts().to_dict() == {name: 3 for name in LABEL_NAMES}


def test_plots_have_titles_and_axis_labels(tiny, news):
    _, tokenizer = tiny
    lengths = explore.token_lengths(tokenizer, news.train.texts)
    assert labelled(explore.plot_token_lengths(lengths, 64).axes[0])
    tokenized = split_of_lengths([2, 8, 2, 8])
    table = explore.padding_waste(tokenized, 2, 10, 0)
    figure = explore.plot_padding(table, explore.batch_layouts(tokenized, 2, 10, 0))
    assert labelled(figure.axes[0]) and figure.axes[1].get_title() and figure.axes[-1].get_xlabel()


# ---- 02 --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, prefix, component", [
    ("distilbert.embeddings.word_embeddings.weight", "distilbert", "embeddings: word_embeddings"),
    ("distilbert.transformer.layer.5.ffn.lin1.weight", "distilbert", "transformer layer 5"),
    ("bert.encoder.layer.11.attention.self.query.weight", "bert", "transformer layer 11"),
    ("bert.pooler.dense.weight", "bert", "pooler"),
    ("classifier.bias", "distilbert", "classifier"),
])
def test_component_of_groups_parameters_by_block(name, prefix, component):
    assert explore.component_of(name, prefix) == component


def test_parameter_table_adds_up_and_excludes_embedding_tables_from_dense_n(tiny):
    model, _ = tiny
    table = explore.parameter_table(model)
    assert table["parameters"].sum() == count_parameters(model)
    assert sum(c.startswith("transformer layer") for c in table.index) == model.config.n_layers
    assert not table.loc["embeddings: word_embeddings", "in dense N"]
    assert table.loc["embeddings: word_embeddings", "parameters"] == model.get_input_embeddings().weight.numel()
    assert table.loc[table["in dense N"], "parameters"].sum() == explore.dense_parameters(model)
    assert table["share %"].sum() == pytest.approx(100, abs=0.1)
    assert labelled(explore.plot_parameters(table).axes[0])


def test_step_compute_counts_padding_as_processed(tiny):
    model, tokenizer = tiny
    batch = tokenizer(["oil prices rose", "the yankees won the pennant at fenway park"], padding=True,
                      return_tensors="pt")
    table = explore.step_compute(model, batch)
    real, processed = table["tokens"]
    assert real == int(batch["attention_mask"].sum()) and processed == batch["input_ids"].numel() > real
    n = explore.dense_parameters(model)
    assert list(table["FLOPs (6 x parameters x tokens)"]) == [6 * n * real, 6 * n * processed]


def test_training_flops_and_seconds_at():
    assert explore.training_flops(parameters=1_000, tokens=10) == 60_000
    assert explore.seconds_at(1e12, peak_flops_per_s=1e12, utilization=0.5) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="utilization"):
        explore.seconds_at(1e12, 1e12, utilization=0)


def test_time_training_step_measures_without_changing_the_weights(tiny):
    model, tokenizer = tiny
    batch = dict(tokenizer(["oil prices rose", "stocks fell"], padding=True, return_tensors="pt"))
    batch["labels"] = torch.tensor([2, 2])
    before = [p.detach().clone() for p in model.parameters()]
    seconds = explore.time_training_step(model, batch, torch.device("cpu"), repeats=2)
    assert 0 < seconds < 30
    assert all(p.grad is None for p in model.parameters())  # gradients dropped, no optimizer step
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


# ---- 03 --------------------------------------------------------------------------------------------


def test_schedule_curve_is_the_schedule_the_scheduler_steps_through():
    from transformers import get_linear_schedule_with_warmup

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=2, num_training_steps=10)
    steps, lrs = explore.schedule_curve(scheduler, 10)
    assert steps == list(range(11))
    assert lrs[:3] == [0.0, 0.5, 1.0] and lrs[-1] == 0.0 and lrs[6] == pytest.approx(0.5)
    stepped = []
    for _ in range(10):
        optimizer.step()
        scheduler.step()
        stepped.append(scheduler.get_last_lr()[0])
    assert stepped == pytest.approx(lrs[1:])
    assert labelled(explore.plot_learning_rate(scheduler, 10).axes[0])


def test_per_class_table_reads_precision_recall_and_support():
    confusion = torch.tensor([[8, 2, 0, 0], [0, 10, 0, 0], [0, 0, 5, 5], [0, 0, 0, 10]])
    table = explore.per_class_table(metrics_from_confusion(confusion))
    assert list(table.index) == list(LABEL_NAMES)
    assert table.loc["World", "recall"] == 0.8 and table.loc["Sports", "precision"] == pytest.approx(0.833)
    assert list(table["support"]) == [10, 10, 10, 10]
