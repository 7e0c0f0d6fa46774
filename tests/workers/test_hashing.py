"""The feature-hashing embedder's maths."""

from __future__ import annotations

import math

import pytest

from workers.services.hashing import cosine, embed, features


def test_vectors_are_deterministic_unit_length_and_sized() -> None:
    vector = embed("The quick brown fox jumps", 128)
    assert len(vector) == 128
    assert math.isclose(math.sqrt(sum(v * v for v in vector)), 1.0, rel_tol=1e-9)
    assert embed("The quick brown fox jumps", 128) == vector
    assert embed("the QUICK brown, fox jumps!", 128) == vector  # case and punctuation do not matter


def test_features_are_unigrams_and_half_weight_bigrams() -> None:
    assert list(features("a b c")) == [("a", 1.0), ("b", 1.0), ("c", 1.0), ("a b", 0.5), ("b c", 0.5)]


def test_empty_text_is_the_zero_vector() -> None:
    assert embed("  ... ", 16) == [0.0] * 16


def test_similar_texts_are_closer_than_unrelated_ones() -> None:
    base = embed("rabbitmq queues deliver task messages to workers")
    close = embed("rabbitmq queues deliver messages to the workers")
    far = embed("a recipe for lemon cake with vanilla frosting")
    assert cosine(base, close) > 0.6
    assert cosine(base, far) < 0.3


def test_word_order_matters_through_bigrams() -> None:
    forward, backward = embed("dog bites man"), embed("man bites dog")
    assert forward != backward
    assert 0.5 < cosine(forward, backward) < 1.0


def test_dimensions_must_be_positive() -> None:
    with pytest.raises(ValueError, match="dimensions"):
        embed("x", 0)
