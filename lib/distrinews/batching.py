"""From texts to padded batches: a tokenization cache, batch samplers that shard by rank, dynamic padding.

The default training path groups texts of similar length into a batch and pads each batch only to its own
longest text. On real AG News that processes about 1.004 tokens per real token, against 2.44 when every
text is padded to 128 (`padding_ratio` measures it for any loader). Under DDP the ranks' batches of one step
are neighbours in length, so no rank waits long for another's longer batch (`sync_efficiency` measures it).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .config import TrainConfig
from .data import NewsSplit

# A length group holds this many batches (8,192 texts at batch 32): sorted within, shuffled across. On AG News
# lengths, 64 / 128 / 256 / 512 give 1.015 / 1.008 / 1.004 / 1.002 tokens processed per real token.
GROUP_SIZE_IN_BATCHES = 256


class TokenizedSplit(Dataset):
    """Token ids of one split, stored flat with offsets (compact, and cached on disk as one .npz)."""

    def __init__(self, ids: np.ndarray, offsets: np.ndarray, labels: np.ndarray):
        self.ids, self.offsets, self.labels = ids, offsets, labels
        self.lengths = np.diff(offsets)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[int, np.ndarray, int]:
        return index, self.ids[self.offsets[index]:self.offsets[index + 1]], int(self.labels[index])

    @property
    def real_tokens(self) -> int:
        return int(self.lengths.sum())


def cache_dir() -> Path:
    return Path(os.environ.get("DISTRINEWS_CACHE", Path.home() / ".cache" / "distrinews")) / "tokens"


def tokenize_split(tokenizer, split: NewsSplit, max_length: int, use_cache: bool = True) -> TokenizedSplit:
    """Tokenize once; later runs (and the other ranks) read the cached ids instead."""
    path = cache_dir() / f"{cache_key(tokenizer, split, max_length)}.npz"
    if use_cache and path.exists():
        with np.load(path) as saved:
            return TokenizedSplit(saved["ids"], saved["offsets"], saved["labels"])
    encoded = tokenizer(list(split.texts), truncation=True, max_length=max_length)["input_ids"]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(ids) for ids in encoded])
    ids = np.fromiter((t for seq in encoded for t in seq), dtype=np.int32, count=int(offsets[-1]))
    labels = np.asarray(split.labels, dtype=np.int64)
    if use_cache:
        save_atomically(path, ids=ids, offsets=offsets, labels=labels)
    return TokenizedSplit(ids, offsets, labels)


def cache_key(tokenizer, split: NewsSplit, max_length: int) -> str:
    digest = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        spec.pop("truncation", None), spec.pop("padding", None)  # call settings, changed by every call
        digest.update(json.dumps(spec, sort_keys=True).encode())
    else:
        digest.update(repr(sorted(tokenizer.get_vocab().items())).encode())
    digest.update(f"{type(tokenizer).__name__}|{max_length}|{len(split)}".encode())
    for text, label in zip(split.texts, split.labels):
        digest.update(f"{label}\x00{text}\x00".encode())
    return digest.hexdigest()[:32]


def save_atomically(path: Path, **arrays: np.ndarray) -> None:
    """Write to a temporary name, then rename: ranks racing to fill the cache never read half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


class BatchSampler:
    """Yields this rank's batches of indices for one epoch, deterministic for (seed, epoch).

    grouped=True sorts each group of GROUP_SIZE_IN_BATCHES batches by length, so a batch holds texts of
    similar length, then shuffles the order. Each epoch covers every index exactly once; with several
    ranks, batch i goes to rank i % world_size, and every rank runs the same number of steps (a few
    batches repeat when the count does not divide evenly, as DistributedSampler repeats samples).

    Under DDP every step ends when the slowest rank's backward ends. balanced=True (grouped only) cuts
    each sorted group into steps of world_size neighbouring batches and shuffles the steps, so the ranks'
    batches of one step hold texts of similar length; the last step's own batches repeat to fill it.
    balanced=False shuffles the batches themselves and repeats the first ones: one rank may get 20-token
    headlines while another gets 90-token ones, and the first waits. On the real AG News test rows (batch 32)
    `sync_efficiency` is 0.863 at 2 ranks and 0.756 at 4 dealt at random, 0.994 and 0.985 balanced, at the
    same padding (1.004). One process gets the same order either way.
    """

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int, grouped: bool = True,
                 rank: int = 0, world_size: int = 1, balanced: bool = True):
        self.lengths, self.batch_size, self.seed, self.grouped = lengths, batch_size, seed, grouped
        self.rank, self.world_size, self.balanced = rank, world_size, balanced and grouped
        self.epoch, self.skip_batches = 0, 0

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        """Choose the epoch's order; skip_batches resumes mid-epoch at this rank's next unseen batch."""
        self.epoch, self.skip_batches = epoch, skip_batches

    def global_batches(self) -> list[list[int]]:
        """All ranks' batches for this epoch, in order, padded to a multiple of world_size."""
        rng = random.Random(self.seed * 100_003 + self.epoch)
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        ranks = self.world_size
        if self.grouped:
            per_group = -(-GROUP_SIZE_IN_BATCHES // ranks) * ranks if self.balanced else GROUP_SIZE_IN_BATCHES
            group = self.batch_size * per_group  # balanced: whole steps per group, none straddles two
            order = [i for start in range(0, len(order), group)
                     for i in sorted(order[start:start + group], key=lambda i: -self.lengths[i])]
        batches = [order[start:start + self.batch_size] for start in range(0, len(order), self.batch_size)]
        if not self.balanced:
            if self.grouped:
                rng.shuffle(batches)  # similar lengths inside a batch, random order across batches
            return batches + batches[:-len(batches) % ranks]
        # DDP: a step is world_size neighbours in length: no rank waits long for another's longer batch
        steps = [batches[start:start + ranks] for start in range(0, len(batches), ranks)]
        steps[-1] = [steps[-1][i % len(steps[-1])] for i in range(ranks)]  # DDP: fill it from its own batches
        rng.shuffle(steps)  # random order across steps (one process: the same draw as shuffling the batches)
        return [batch for step in steps for batch in step]

    def __iter__(self):
        mine = self.global_batches()[self.rank::self.world_size]
        return iter(mine[self.skip_batches:])

    def __len__(self) -> int:
        """Batches this rank runs in a full epoch (before any skip)."""
        total = -(-len(self.lengths) // self.batch_size)
        return -(-total // self.world_size)


class EvalBatchSampler:
    """Unpadded sharding for exact evaluation: every index lands on exactly one rank, once.

    Indices are sorted by length (little padding) and dealt out like cards, so ranks get similar work;
    shards may differ in size by one, which is fine because evaluation sums counts across ranks.
    """

    def __init__(self, lengths: np.ndarray, batch_size: int, rank: int = 0, world_size: int = 1):
        by_length = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
        self.indices = by_length[rank::world_size]
        self.batch_size = batch_size

    def __iter__(self):
        return (self.indices[s:s + self.batch_size] for s in range(0, len(self.indices), self.batch_size))

    def __len__(self) -> int:
        return -(-len(self.indices) // self.batch_size)


@dataclass(frozen=True)
class PadCollator:
    """Stack a batch, padding to its longest text (or to a fixed length for the max_length strategy)."""

    pad_id: int
    fixed_length: int = 0  # 0 = dynamic padding

    def padded_length(self, longest: int) -> int:
        return self.fixed_length or longest

    def __call__(self, items: list[tuple[int, np.ndarray, int]]) -> dict[str, torch.Tensor]:
        width = self.padded_length(max(len(ids) for _, ids, _ in items))
        input_ids = torch.full((len(items), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(items), width), dtype=torch.long)
        for row, (_, ids, _) in enumerate(items):
            input_ids[row, :len(ids)] = torch.from_numpy(ids.astype(np.int64))
            attention_mask[row, :len(ids)] = 1
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": torch.tensor([label for _, _, label in items]),
            "index": torch.tensor([index for index, _, _ in items]),
        }


def build_train_loader(data: TokenizedSplit, padding: str, batch_size: int, max_length: int, seed: int,
                       pad_id: int, rank: int = 0, world_size: int = 1, pin_memory: bool = False,
                       balanced: bool = True) -> DataLoader:
    """The training loader for a padding strategy: grouped, dynamic or max_length (balanced: see BatchSampler)."""
    sampler = BatchSampler(data.lengths, batch_size, seed, grouped=padding == "grouped", rank=rank,
                           world_size=world_size, balanced=balanced)  # DDP: each rank draws a disjoint set of batches
    collate = PadCollator(pad_id, fixed_length=max_length if padding == "max_length" else 0)
    # Its own generator: a DataLoader otherwise draws a seed from the global RNG each epoch, and a resumed run
    # (which builds its iterator at another moment) would then see different dropout masks.
    return DataLoader(data, batch_sampler=sampler, collate_fn=collate, pin_memory=pin_memory,
                      generator=torch.Generator().manual_seed(seed))


def build_eval_loader(data: TokenizedSplit, batch_size: int, pad_id: int, rank: int = 0, world_size: int = 1,
                      pin_memory: bool = False) -> DataLoader:
    sampler = EvalBatchSampler(data.lengths, batch_size, rank, world_size)  # DDP: unpadded shard, no repeats
    return DataLoader(data, batch_sampler=sampler, collate_fn=PadCollator(pad_id), pin_memory=pin_memory,
                      generator=torch.Generator())


class Loaders(NamedTuple):
    train: DataLoader
    eval: DataLoader
    test: DataLoader


def build_loaders(splits, config: TrainConfig, device: torch.device, rank: int = 0,
                  world_size: int = 1) -> Loaders:
    """A run's train, eval and test loaders (`splits`: training.Splits), each holding this rank's shard; batches
    come from pinned memory when they go to a GPU."""
    pin = device.type == "cuda"
    train = build_train_loader(splits.train, config.padding, config.per_device_batch_size, config.max_length,
                               config.seed, splits.pad_id, rank, world_size, pin, config.balanced_steps)
    evaluation, test = (build_eval_loader(split, config.eval_batch_size, splits.pad_id, rank, world_size, pin)
                        for split in (splits.eval, splits.test))
    return Loaders(train, evaluation, test)


def padding_ratio(loader: DataLoader) -> float:
    """Tokens the model processes per real token over one pass of the loader (1.0 = no padding)."""
    lengths, collate = loader.dataset.lengths, loader.collate_fn
    processed = real = 0
    for batch in loader.batch_sampler:
        batch_lengths = lengths[batch]
        processed += len(batch) * collate.padded_length(int(batch_lengths.max()))
        real += int(batch_lengths.sum())
    return processed / real


def rank_work(loader: DataLoader, grad_accum_steps: int = 1) -> np.ndarray:
    """Padded tokens each rank computes at each optimizer step of the epoch: one row per step, one column per rank.

    Read from the sampler's order for all ranks (`global_batches`), so any one rank's loader tells the whole job.
    """
    sampler, lengths, collate = loader.batch_sampler, loader.dataset.lengths, loader.collate_fn
    work = np.array([len(batch) * collate.padded_length(int(lengths[batch].max()))
                     for batch in sampler.global_batches()], dtype=np.float64).reshape(-1, sampler.world_size)
    return np.add.reduceat(work, np.arange(0, len(work), grad_accum_steps), axis=0)  # micro-batches add up


def sync_efficiency(loader: DataLoader, grad_accum_steps: int = 1) -> float:
    """Sum over steps of the ranks' mean work over the sum of the slowest rank's (1.0 = no rank ever waits).

    Work is padded tokens, which a step's compute follows; every step ends when its slowest rank's backward
    ends (DDP's all-reduce), so 1 - this is the share of the ranks' time spent waiting.
    """
    work = rank_work(loader, grad_accum_steps)
    return float(work.mean(axis=1).sum() / work.max(axis=1).sum())


def describe_padding(loader: DataLoader, padding: str, grad_accum_steps: int = 1) -> str:
    """The training log's padding line: tokens processed per real token, and under DDP the sync efficiency."""
    text = f"padding {padding}: {padding_ratio(loader):.3f} tokens processed per real token"
    if loader.batch_sampler.world_size > 1:  # DDP: how much of a step the ranks spend waiting for the slowest
        text += f", sync efficiency {sync_efficiency(loader, grad_accum_steps):.3f} (ranks' mean work / slowest's)"
    return text
