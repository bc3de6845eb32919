"""distrinews.concepts reading weights that transformers 5.0 to 5.5 wrote under DistilBERT's legacy LayerNorm names."""

import pytest
import torch
from safetensors.torch import save_file

from distrinews import concepts
from distrinews.modeling import build_model, build_tokenizer


@pytest.fixture(scope="module")
def tiny_state():
    model = build_model("tiny", build_tokenizer("tiny"), seed=0)
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def legacy(name: str) -> str:
    """The name transformers 5.0.0 to 5.5.4 write for the embedding LayerNorm."""
    return name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")


def test_a_file_with_gamma_and_beta_compares_equal_to_the_model_it_came_from(tiny_state, tmp_path):
    renamed = {legacy(name): tensor for name, tensor in tiny_state.items()}
    assert any(name.endswith("LayerNorm.gamma") for name in renamed), "the tiny model has no embedding LayerNorm"
    save_file(renamed, tmp_path / "model.safetensors")  # a real file, as those versions write it
    save_file(tiny_state, tmp_path / "current.safetensors")

    loaded = concepts.load_weights(tmp_path)
    assert loaded.keys() == tiny_state.keys()
    table = concepts.compare_weights(tmp_path, tmp_path / "current.safetensors", initial=tiny_state)
    assert len(table) == len(tiny_state) and table["max |difference|"].max() == 0
    assert table["max |change by training|"].notna().all(), "every tensor found in the starting weights"


def test_a_name_under_both_spellings_is_refused(tiny_state):
    name = next(n for n in tiny_state if n.endswith("LayerNorm.weight"))
    with pytest.raises(ValueError, match="legacy and its current name"):
        concepts.load_weights({**tiny_state, legacy(name): tiny_state[name]})
