"""Paragraph- and sentence-aware chunking with overlap."""

from __future__ import annotations

import itertools

import pytest

from workers.services.chunking import chunk_text

TEXT = (
    "Baton runs tasks. It uses RabbitMQ.\n\n"
    "Workers consume queues. They publish events! Clients watch them over WebSockets?\n\n"
    "Short."
)


def test_small_text_is_one_chunk_equal_to_the_trimmed_text() -> None:
    chunks = chunk_text("  hello world  ", size=100, overlap=10)
    assert [(c.index, c.start, c.end, c.text) for c in chunks] == [(0, 2, 13, "hello world")]


def test_chunks_respect_the_size_and_are_slices_of_the_text() -> None:
    chunks = chunk_text(TEXT, size=60, overlap=0)
    assert len(chunks) > 2
    for chunk in chunks:
        assert len(chunk.text) <= 60
        assert TEXT[chunk.start : chunk.end] == chunk.text
    assert [c.index for c in chunks] == list(range(len(chunks)))
    # Sentence boundaries are kept: every chunk ends at the end of a sentence.
    assert all(c.text[-1] in ".!?" for c in chunks)
    covered = "".join(TEXT[c.start : c.end] for c in chunks)
    assert all(word in covered for word in TEXT.split())


def test_overlap_repeats_trailing_sentences_without_duplicating_whole_chunks() -> None:
    text = " ".join(f"Sentence number {i} is here." for i in range(30))
    chunks = chunk_text(text, size=120, overlap=40)
    assert len(chunks) > 3
    for previous, current in itertools.pairwise(chunks):
        assert current.start < previous.end  # they overlap...
        assert current.end > previous.end  # ...and each one still adds new text
        assert previous.end - current.start <= 40


def test_a_sentence_longer_than_the_size_is_cut_between_words() -> None:
    text = " ".join(["word"] * 100)
    chunks = chunk_text(text, size=50, overlap=10)
    assert all(len(c.text) <= 50 for c in chunks)
    assert all(not c.text.startswith(" ") and c.text.split() == ["word"] * len(c.text.split()) for c in chunks)
    assert chunks[-1].end == len(text)


def test_a_word_longer_than_the_size_is_cut_hard() -> None:
    chunks = chunk_text("x" * 25, size=10, overlap=0)
    assert [c.text for c in chunks] == ["x" * 10, "x" * 10, "x" * 5]


def test_whitespace_only_gives_no_chunks_and_bad_sizes_are_refused() -> None:
    assert chunk_text(" \n\n \t", size=10, overlap=0) == []
    with pytest.raises(ValueError, match="overlap"):
        chunk_text("text", size=10, overlap=10)
    with pytest.raises(ValueError, match="size"):
        chunk_text("text", size=0, overlap=0)
