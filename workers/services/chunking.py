"""Splitting a document into overlapping chunks along paragraph and sentence boundaries.

The text is cut into units: paragraphs (separated by blank lines); a paragraph longer
than the chunk size is cut into sentences; a sentence longer than that into windows of
whole words that overlap by `overlap` characters. Units are then packed greedily into
chunks of at most `size` characters; the next chunk starts with the trailing units of
the previous one that fit in `overlap` characters, so context carries across a cut
without ever breaking a sentence. Chunks are slices of the original text (`start`,
`end` are offsets into it), so nothing is re-flowed or lost.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"')\]]*\s+")
_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Chunk:
    index: int
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class _Span:
    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start


def chunk_text(text: str, size: int = 1000, overlap: int = 100) -> list[Chunk]:
    if size < 1:
        raise ValueError("chunk size must be at least 1")
    if not 0 <= overlap < size:
        raise ValueError("chunk overlap must be at least 0 and smaller than the chunk size")
    spans = _pack(_units(text, size, overlap), size, overlap)
    return [Chunk(index, span.start, span.end, text[span.start : span.end]) for index, span in enumerate(spans)]


def _pack(units: list[_Span], size: int, overlap: int) -> list[_Span]:
    """Greedy packing of consecutive units into spans of at most `size` characters.

    After a span ending at unit j, the next starts at the smallest k in (i, j] whose units
    k..j fit in `overlap` characters and still leave room for unit j + 1 (so no chunk is a
    mere copy of the previous one's tail; k > i, so packing always moves forward), else at j + 1.
    """
    packed: list[_Span] = []
    i = 0
    while i < len(units):
        j = i
        while j + 1 < len(units) and units[j + 1].end - units[i].start <= size:
            j += 1
        packed.append(_Span(units[i].start, units[j].end))
        if j + 1 == len(units):
            break
        k = j + 1
        while (
            k - 1 > i and units[j].end - units[k - 1].start <= overlap and units[j + 1].end - units[k - 1].start <= size
        ):
            k -= 1
        i = k
    return packed


def _units(text: str, size: int, overlap: int) -> list[_Span]:
    units: list[_Span] = []
    for paragraph in _split(text, _PARAGRAPH_BREAK, 0, len(text)):
        if paragraph.length <= size:
            units.append(paragraph)
            continue
        for sentence in _split(text, _SENTENCE_END, paragraph.start, paragraph.end):
            if sentence.length <= size:
                units.append(sentence)
            else:
                units.extend(_windows(text, sentence, size, overlap))
    return units


def _split(text: str, separator: re.Pattern[str], start: int, end: int) -> list[_Span]:
    """Spans of text[start:end] between separator matches, with surrounding whitespace trimmed."""
    spans: list[_Span] = []
    cursor = start
    for match in separator.finditer(text, start, end):
        spans.extend(_trimmed(text, cursor, match.start()))
        cursor = match.end()
    spans.extend(_trimmed(text, cursor, end))
    return spans


def _trimmed(text: str, start: int, end: int) -> list[_Span]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return [_Span(start, end)] if end > start else []


def _windows(text: str, span: _Span, size: int, overlap: int) -> list[_Span]:
    """Windows of whole words of at most `size` chars; a single longer word is cut hard."""
    words = [_Span(m.start(), m.end()) for m in _WORD.finditer(text, span.start, span.end)]
    pieces: list[_Span] = []
    for word in words:
        pieces.extend(_Span(s, min(s + size, word.end)) for s in range(word.start, word.end, size))
    return _pack(pieces, size, overlap)
