"""Batch samplers, dynamic padding, the tokenization cache and the padding-waste figure."""

from collections import Counter

import numpy as np
import pytest

from distrinews.batching import (BatchSampler, EvalBatchSampler, PadCollator, build_train_loader, cache_dir,
                                 padding_ratio, tokenize_split)
from distrinews.data import NewsSplit, read_news_csv
from distrinews.modeling import build_tokenizer

LENGTHS = np.random.default_rng(0).integers(5, 120, size=1003)


def epoch_indices(sampler, epoch):
    sampler.set_epoch(epoch)
    return [i for batch in sampler for i in batch]


@pytest.mark.parametrize("grouped", [True, False])
def test_every_index_exactly_once_per_epoch(grouped):
    sampler = BatchSampler(LENGTHS, batch_size=32, seed=1, grouped=grouped)
    for epoch in range(3):
        assert sorted(epoch_indices(sampler, epoch)) == list(range(len(LENGTHS)))
    assert len(sampler) == len(list(sampler)) == 32  # ceil(1003 / 32)


def test_order_is_deterministic_for_seed_and_epoch():
    a, b = BatchSampler(LENGTHS, 32, seed=1), BatchSampler(LENGTHS, 32, seed=1)
    assert epoch_indices(a, 0) == epoch_indices(b, 0)
    assert epoch_indices(a, 0) != epoch_indices(a, 1)
    assert epoch_indices(a, 0) != epoch_indices(BatchSampler(LENGTHS, 32, seed=2), 0)


def test_grouped_batches_hold_similar_lengths_in_shuffled_order():
    sampler = BatchSampler(LENGTHS, 32, seed=1)
    sampler.set_epoch(0)
    batches = list(sampler)
    spread = np.mean([np.ptp(LENGTHS[b]) for b in batches])
    assert spread < 10  # random batches of 32 from 5..120 spread about 100
    longest = [LENGTHS[b].max() for b in batches]
    assert longest != sorted(longest) and longest != sorted(longest, reverse=True)


def test_ranks_get_disjoint_equal_shards_covering_everything():
    shards = [BatchSampler(LENGTHS, 32, seed=3, rank=r, world_size=3) for r in range(3)]
    per_rank = [epoch_indices(s, 0) for s in shards]
    assert len({len(list(s)) for s in shards}) == 1  # every rank runs the same number of steps
    seen = Counter(i for indices in per_rank for i in indices)
    assert set(seen) == set(range(len(LENGTHS)))
    # 32 batches do not split evenly over 3 ranks: the first batch is repeated, as DistributedSampler pads samples
    repeated = [i for i, n in seen.items() if n == 2]
    assert max(seen.values()) == 2 and sorted(repeated) == sorted(shards[0].global_batches()[0])


def test_skip_batches_resumes_at_the_next_unseen_batch():
    sampler = BatchSampler(LENGTHS, 32, seed=1, rank=1, world_size=2)
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.set_epoch(2, skip_batches=5)
    assert list(sampler) == full[5:]


@pytest.mark.parametrize("n, world_size", [(7, 3), (101, 2), (5, 8)])
def test_eval_shards_count_every_example_once(n, world_size):
    lengths = np.arange(n) % 13 + 1
    indices = [i for r in range(world_size) for b in EvalBatchSampler(lengths, 4, r, world_size) for i in b]
    assert sorted(indices) == list(range(n))


def test_collator_pads_dynamically_or_to_a_fixed_length():
    items = [(0, np.array([5, 6, 7]), 1), (1, np.array([8]), 3)]
    batch = PadCollator(pad_id=0)(items)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [1, 3] and batch["index"].tolist() == [0, 1]
    assert PadCollator(pad_id=0, fixed_length=6)(items)["input_ids"].shape == (2, 6)


def test_tokenization_is_cached_on_disk():
    tokenizer = build_tokenizer("tiny")
    split = NewsSplit("train", ("Stocks rally on Wall Street", "Team wins the cup final"), (2, 1))
    first = tokenize_split(tokenizer, split, max_length=16)
    files = list(cache_dir().glob("*.npz"))
    assert len(files) >= 1
    again = tokenize_split(tokenizer, split, max_length=16)
    assert np.array_equal(first.ids, again.ids) and np.array_equal(first.offsets, again.offsets)
    assert tokenize_split(tokenizer, split, max_length=4).lengths.max() == 4  # another key, truncated
    assert len(list(cache_dir().glob("*.npz"))) == len(files) + 1


def test_padding_waste_on_real_ag_news(realdata):
    """The figures in the README: length grouping brings the default path near 1.0 tokens per real token."""
    tokenizer = build_tokenizer("minilm")  # the bert-base-uncased vocabulary, offline
    texts, labels, _ = read_news_csv(realdata / "test.csv")
    split = NewsSplit("test", tuple(texts), tuple(labels))
    untruncated = tokenize_split(tokenizer, split, max_length=512).lengths
    assert abs(np.mean(untruncated) - 52.7) < 1.0 and untruncated.max() == 277
    data = tokenize_split(tokenizer, split, max_length=128)

    def ratio(padding, max_length=128):
        loader = build_train_loader(data, padding, 32, max_length, seed=0, pad_id=0)
        return padding_ratio(loader)

    assert ratio("max_length") == pytest.approx(128 * len(data) / data.real_tokens)
    assert 2.3 < ratio("max_length") < 2.6
    assert 1.8 < ratio("dynamic") < 2.1
    assert ratio("grouped") <= 1.05
