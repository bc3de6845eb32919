"""Model and tokenizer sources: tiny, the offline MiniLM package, local directories, clear failures."""

import pytest
import torch

from distrinews.modeling import ModelError, build_model_and_tokenizer, resolve_model_name


def test_tiny_is_a_small_distilbert_with_ag_news_labels():
    model, tokenizer = build_model_and_tokenizer("tiny")
    assert model.config.model_type == "distilbert" and model.config.num_labels == 4
    assert model.config.label2id["Business"] == 2
    ids = tokenizer(["Oil prices climb; Wall Street slips"], return_tensors="pt")
    assert tokenizer.unk_token_id not in ids["input_ids"][0].tolist()
    assert model(**ids).logits.shape == (1, 4)


def test_tiny_is_deterministic_for_a_seed():
    a, _ = build_model_and_tokenizer("tiny", seed=3)
    b, _ = build_model_and_tokenizer("tiny", seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_minilm_loads_offline_from_its_package():
    assert resolve_model_name("minilm").endswith("model")
    model, tokenizer = build_model_and_tokenizer("minilm")
    assert model.config.num_labels == 4 and model.config.id2label[0] == "World"
    assert tokenizer.vocab_size == 30522  # bert-base-uncased


def test_unloadable_names_say_what_would_work(tmp_path):
    with pytest.raises(ModelError, match="'tiny' for a smoke run"):
        build_model_and_tokenizer(str(tmp_path / "missing"))
