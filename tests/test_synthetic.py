"""Tests for the built-in synthetic AG-News-like generator."""

import math
import re
from collections import Counter

import pytest

from distrinews.labels import LABEL_NAMES
from distrinews.synthetic import generate_news


def test_same_seed_gives_identical_output():
    assert generate_news(200, seed=7) == generate_news(200, seed=7)


def test_different_seeds_give_different_output():
    texts_a, labels_a = generate_news(200, seed=0)
    texts_b, labels_b = generate_news(200, seed=1)
    assert texts_a != texts_b
    assert labels_a != labels_b


@pytest.mark.parametrize("n", [0, 1, 3, 4, 101, 1000])
def test_labels_are_balanced(n):
    texts, labels = generate_news(n, seed=3)
    assert len(texts) == len(labels) == n
    counts = Counter(labels)
    for label in range(len(LABEL_NAMES)):
        assert abs(counts[label] - n / len(LABEL_NAMES)) <= 1


def test_labels_align_with_label_names():
    assert len(LABEL_NAMES) == 4
    _, labels = generate_news(500, seed=0)
    assert set(labels) == set(range(len(LABEL_NAMES)))


def test_texts_are_news_sized_and_varied():
    texts, _ = generate_news(2000, seed=0)
    lengths = [len(text.split()) for text in texts]
    assert all(text.strip() for text in texts)
    assert min(lengths) >= 12
    assert max(lengths) <= 90
    assert 25 <= sum(lengths) / len(lengths) <= 40
    # A realistic mix: most items short-to-medium, but a tail of longer ones.
    assert sum(length > 50 for length in lengths) > 0
    assert len(set(lengths)) >= 20
    assert len(set(texts)) > 0.95 * len(texts)


def test_negative_n_is_rejected():
    with pytest.raises(ValueError, match="non-negative"):
        generate_news(-1, seed=0)


def tokenize(text):
    return re.findall(r"[a-z0-9'-]+", text.lower())


def naive_bayes_accuracy(train, test):
    """Multinomial naive Bayes with add-one smoothing, trained on train, scored on test."""
    train_texts, train_labels = train
    word_counts = [Counter() for _ in LABEL_NAMES]
    for text, label in zip(train_texts, train_labels):
        word_counts[label].update(tokenize(text))
    vocab_size = len(set().union(*word_counts))
    totals = [sum(counts.values()) for counts in word_counts]
    priors = Counter(train_labels)

    def log_score(words, label):
        denominator = totals[label] + vocab_size
        likelihood = sum(math.log((word_counts[label][w] + 1) / denominator) for w in words)
        return math.log(priors[label]) + likelihood

    test_texts, test_labels = test
    correct = 0
    for text, label in zip(test_texts, test_labels):
        words = tokenize(text)
        predicted = max(range(len(LABEL_NAMES)), key=lambda c: log_score(words, c))
        correct += predicted == label
    return correct / len(test_labels)


@pytest.mark.parametrize("train_seed,test_seed", [(0, 1), (2, 3)])
def test_bag_of_words_learns_it_well_but_not_perfectly(train_seed, test_seed):
    accuracy = naive_bayes_accuracy(generate_news(2000, train_seed), generate_news(1000, test_seed))
    assert 0.90 <= accuracy <= 0.985, accuracy
