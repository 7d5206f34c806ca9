"""Prompt sketches: a few integers that keep what the detectors need.

A sketch is ``[version, length, flags, skeleton, band0, ..., band4]``
(all 32-bit unsigned):

* ``length``: the prompt's length in characters (capped);
* ``flags``: reasoning-elicitation bits from ``keyops.detect.patterns``;
* ``skeleton``: a *template skeleton*: CRC32 of the first ``SKELETON_TOKENS``
  word tokens with numbers masked. Prompts that start with the same
  instruction share it, whatever content follows ("a shared instruction with
  varied content");
* ``band0..4``: *MinHash LSH* bands. The content words (stop words removed,
  CJK runs as character bigrams) are hashed once with CRC32 and summarised by
  one-permutation hashing into 16 minimums (the top 4 bits of the hash pick
  the bin, so each bin's minimum is one ``bisect`` into the sorted hashes);
  triples of minimums form 5 bands. Two prompts share a band with
  probability about ``1 - (1 - J^3)^5`` for word-set Jaccard similarity
  ``J``: ~0.38 at J = 0.45 (a template with short fills), ~0.007 at J = 0.11
  (a long shared instruction before long varied content), ~0.0006 at
  J = 0.05 (unrelated text). Three rows per band keep the false-match rate
  low enough to compare each prompt with the key's last 24.
  A band match means "near duplicate", so a long shared instruction followed
  by long varied content is *not* a near duplicate, while a short template
  with short fills is. ``bench/detection.py`` measures both signals.

Everything is built from CRC32 and integer arithmetic, so the same prompt
gives the same sketch in every process and on every platform: a gateway that
sketches with ``keyops.client.sketch`` and the daemon that sketches a posted
prompt agree. The cost is a few C-level passes (``translate`` + ``split``,
``map(crc32)``, ``sorted``, a ``map`` of 16 bisects) and a handful of
Python-level steps per prompt, none per word: sketching is most of what an
event with a prompt costs the engine (``bench/engine.py``).
"""

from __future__ import annotations

import re
import zlib
from bisect import bisect_left
from itertools import filterfalse, pairwise, repeat

from keyops.detect.patterns import reasoning_flags

SKETCH_VERSION = 1
SKELETON_TOKENS = 8
BINS = 16
BANDS = 5
ROWS = 3
SKETCH_LENGTH = 4 + BANDS
_M32 = 0xFFFFFFFF
_BIN_SHIFT = 28
_VALUE_MASK = (1 << _BIN_SHIFT) - 1
_BIN_STARTS = tuple(b << _BIN_SHIFT for b in range(BINS))
_SENTINEL = 1 << 32  # above every CRC32
# Row multipliers: band k is ((row0 * _R0) ^ (row1 * _R1) ^ (row2 * _R2) ^ (k + 1)) & 0xFFFFFFFF.
_R0, _R1, _R2 = 0x9E3779B1, 0x85EBCA6B, 0xC2B2AE35
assert BINS == 16 and BANDS * ROWS == 15, "bands_of unrolls 5 bands of 3 rows"
_SPLIT_TABLE = bytes(c if (48 <= c <= 57 or 97 <= c <= 122 or c >= 128) else 32 for c in range(256))
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")

_STOP_WORDS = (
    "a an the and or but if of to in on at by for with from as is are was were be been being it its this that these "
    "those i you he she we they me my your our their what which who whom how why when where can could would should "
    "will shall may might must do does did not no so than then there here about into over under up down out please "
    "also just very all any each some such only own same too more most other"
)
_STOP = frozenset(zlib.crc32(w.encode()) for w in _STOP_WORDS.split())


def _tokens(lowered: str) -> list[bytes]:
    """Word tokens as UTF-8 bytes. ASCII punctuation splits words (one
    ``bytes.translate`` + ``split``, both C loops); CJK runs, which have no
    spaces, become character bigrams."""
    words = lowered.encode("utf-8", "surrogatepass").translate(_SPLIT_TABLE).split()
    if lowered.isascii() or not _CJK.search(lowered):
        return words
    out: list[bytes] = []
    for word in words:
        if word.isascii():
            out.append(word)
            continue
        text = word.decode("utf-8", "surrogatepass")
        if len(text) < 2 or not _CJK.search(text):
            out.append(word)
        else:
            out.extend(text[i : i + 2].encode("utf-8", "surrogatepass") for i in range(len(text) - 1))
    return out


def skeleton_of(tokens: list[bytes]) -> int:
    head = tokens[:SKELETON_TOKENS]
    if any(map(bytes.isdigit, head)):  # mask numbers only when there are some
        head = [b"#" if t.isdigit() else t for t in head]
    return zlib.crc32(b" ".join(head))


def bands_of(tokens: list[bytes]) -> tuple[int, ...]:
    # Repeated words need no de-duplication: a repeat never changes a bin's
    # minimum, and building a set costs more than sorting the extra items.
    ordered = sorted(filterfalse(_STOP.__contains__, map(zlib.crc32, tokens)))
    if not ordered:
        return (0,) * BANDS
    # Where each bin starts in the sorted hashes (one C-level map of bisects);
    # a bin is non-empty when it starts before the next one does, and its
    # minimum is its first hash.
    starts = list(map(bisect_left, repeat(ordered, BINS), _BIN_STARTS))
    ordered.append(_SENTINEL)  # the "first hash" of empty trailing bins
    mins = list(map(_VALUE_MASK.__and__, map(ordered.__getitem__, starts)))
    if len(set(starts)) < BINS or starts[-1] == len(ordered) - 1:
        # Some bin is empty (it starts where the next one does, or at the end).
        starts.append(len(ordered) - 1)
        mins = [m if i < j else -1 for m, (i, j) in zip(mins, pairwise(starts), strict=True)]
        # Densify empty bins (few words): borrow the next non-empty bin's
        # value, salted with the distance, so similar short prompts still agree.
        for b in range(BINS):
            if mins[b] < 0:
                for step in range(1, BINS):
                    other = mins[(b + step) % BINS]
                    if other >= 0:
                        mins[b] = (other + step * 0x9E3779B1) & _VALUE_MASK
                        break
    m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14 = mins[: BANDS * ROWS]
    return (
        ((m0 * _R0) ^ (m1 * _R1) ^ (m2 * _R2) ^ 1) & _M32,
        ((m3 * _R0) ^ (m4 * _R1) ^ (m5 * _R2) ^ 2) & _M32,
        ((m6 * _R0) ^ (m7 * _R1) ^ (m8 * _R2) ^ 3) & _M32,
        ((m9 * _R0) ^ (m10 * _R1) ^ (m11 * _R2) ^ 4) & _M32,
        ((m12 * _R0) ^ (m13 * _R1) ^ (m14 * _R2) ^ 5) & _M32,
    )


def sketch_prompt(prompt: str) -> tuple[int, ...]:
    """The sketch of one prompt (see the module docstring for the layout)."""
    lowered = prompt.lower()
    tokens = _tokens(lowered)
    return (
        SKETCH_VERSION,
        min(len(prompt), _M32),
        reasoning_flags(lowered),
        skeleton_of(tokens),
        *bands_of(tokens),
    )
