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


def test_a_pretrained_encoder_loads_quietly_and_a_missing_encoder_weight_is_named(tmp_path, capfd, recwarn):
    """The new 4-class head is expected: no load report on every rank. A weight missing from the encoder is not."""
    import logging
    logging.getLogger("transformers").propagate = True  # so that a report would show in the captured output
    model, tokenizer = build_model_and_tokenizer("minilm")
    out, err = capfd.readouterr()
    assert "LOAD REPORT" not in out + err and "MISSING" not in out + err and not recwarn.list
    from safetensors.torch import load_file, save_file
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    dropped = next(key for key in weights if "encoder.layer.0" in key)
    save_file({k: v for k, v in weights.items() if k != dropped and not k.startswith("classifier.")},
              tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.warns(UserWarning, match=dropped.split(".", 1)[-1].replace(".", r"\.")):
        build_model_and_tokenizer(str(tmp_path))


def test_unloadable_names_say_what_would_work(tmp_path):
    with pytest.raises(ModelError, match="'tiny' for a smoke run"):
        build_model_and_tokenizer(str(tmp_path / "missing"))
