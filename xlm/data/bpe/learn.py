"""Learning merges (``learnbpe``) the way fastBPE does, from the word counts of ``vocab.py``.

Learning works on distinct words weighted by their counts. Each pair of adjacent token ids maps to
its total count and to the words holding it; a heap ordered by (count desc, left id, right id)
gives the next merge. A merge only lowers the counts of pairs that existed before it and creates
pairs holding the new token, so heap entries are upper bounds: a popped entry whose count is
stale is pushed back with its current count, and the first entry that is current is the best
pair. Only the words holding the merged pair are rewritten, with the neighbouring pair counts
patched around each occurrence (as fastBPE does), so a merge costs what it changes.
"""

from __future__ import annotations

import contextlib
import gc
import heapq
import logging
import os
from collections.abc import Iterator, Mapping, Sequence

from xlm.data import textio
from xlm.data.bpe.apply import word_units
from xlm.data.bpe.codes import Code
from xlm.data.bpe.vocab import COUNT_CHUNK_BYTES, count_words
from xlm.errors import XLMError

log = logging.getLogger(__name__)

_ID_BITS = 32  # pair key = left << 32 | right
_COUNT_BITS = 64  # heap key = (_MAX_COUNT - count) << 64 | pair key: one int, compared in C
_MAX_COUNT = 1 << 62


def learn_codes(word_counts: Mapping[str, int], n_codes: int, *, progress: bool = False) -> list[Code]:
    """At most ``n_codes`` merges ``(left, right, count)``; fewer when no adjacent pair is left.

    Ties on the count go to the smallest ``(left id, right id)``: units are numbered in order of
    first appearance (``word_counts`` order, then left to right in the word), merged tokens in
    order of creation after them. fastBPE uses the same rule with hash-map numbering.
    """
    if n_codes < 0:
        raise XLMError(f"n_codes: expected a non-negative number of merges, got {n_codes}")
    with _gc_paused():
        return _learn(word_counts, n_codes, progress)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Millions of small lists and no reference cycles: the cyclic GC would only rescan them (~25%)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _learn(word_counts: Mapping[str, int], n_codes: int, progress: bool) -> list[Code]:
    tok_ids: dict[str, int] = {}
    tokens: list[str] = []
    words: list[list[int]] = []
    counts: list[int] = []
    for word, count in word_counts.items():
        if count <= 0:
            continue
        ids = []
        for unit in word_units(word):
            tid = tok_ids.get(unit)
            if tid is None:
                tid = tok_ids[unit] = len(tokens)
                tokens.append(unit)
            ids.append(tid)
        words.append(ids)
        counts.append(count)

    pair_counts: dict[int, int] = {}
    where: dict[int, list[int]] = {}
    for wi, word in enumerate(words):
        count = counts[wi]
        for left, right in zip(word, word[1:]):
            key = left << _ID_BITS | right
            if key in pair_counts:
                pair_counts[key] += count
                where[key].append(wi)
            else:
                pair_counts[key] = count
                where[key] = [wi]

    heap = [(_MAX_COUNT - c) << _COUNT_BITS | key for key, c in pair_counts.items()]
    heapq.heapify(heap)
    codes: list[Code] = []
    with textio.progress_bar(progress and textio.is_terminal(), n_codes, "learning BPE codes", unit="merge") as bar:
        while len(codes) < n_codes:
            key, count = _pop_best(heap, pair_counts)
            if count <= 0:
                log.warning("learn-bpe: no pair left to merge after %d of %d merges", len(codes), n_codes)
                break
            a, b = key >> _ID_BITS, key & ((1 << _ID_BITS) - 1)
            codes.append((tokens[a], tokens[b], count))
            new = len(tokens)
            tokens.append(tokens[a] + tokens[b])
            created = _merge_in_words(a, b, new, set(where.pop(key)), words, counts, pair_counts, where)
            del pair_counts[key]  # after: overlapping occurrences of `a a` decrement it on the way
            for pair in created:
                heapq.heappush(heap, (_MAX_COUNT - pair_counts[pair]) << _COUNT_BITS | pair)
            bar.update()
    return codes


def _pop_best(heap: list[int], pair_counts: dict[int, int]) -> tuple[int, int]:
    """The current best pair and its count, or ``(0, 0)`` when no pair has a positive count."""
    mask = (1 << _COUNT_BITS) - 1
    while heap:
        entry = heapq.heappop(heap)
        key = entry & mask
        count = pair_counts.get(key, 0)
        if count == _MAX_COUNT - (entry >> _COUNT_BITS):
            return key, count
        if count > 0:  # stale: counts only fall, so push back with the true one
            heapq.heappush(heap, (_MAX_COUNT - count) << _COUNT_BITS | key)
    return 0, 0


def _merge_in_words(
    a: int,
    b: int,
    new: int,
    candidates: set[int],
    words: list[list[int]],
    counts: list[int],
    pair_counts: dict[int, int],
    where: dict[int, list[int]],
) -> dict[int, list[int]]:
    """Replace each non-overlapping ``a b`` by ``new`` left to right; patch neighbouring pair counts.

    Returns the pairs created (all hold ``new``), which are also added to ``pair_counts``/``where``.
    """
    shift = _ID_BITS
    created: dict[int, list[int]] = {}
    new_new = new << shift | new
    get = pair_counts.get
    created_get = created.get
    for wi in candidates:
        word = words[wi]
        remaining = word.count(a)  # occurrences of `a` left to look at
        if not remaining:
            continue
        n = len(word)
        count = counts[wi]
        out: list[int] | None = None
        last = 0  # end of the previous merged occurrence in `word`
        start = 0
        while remaining > 0:
            i = word.index(a, start)
            if i + 1 < n and word[i + 1] == b:
                if i:
                    if out is not None and last == i:  # right after the previous occurrence
                        held = created_get(new_new)
                        if held is None:
                            created[new_new] = [wi]
                        else:
                            held.append(wi)
                        pair_counts[new_new] = get(new_new, 0) + count
                    else:
                        left = word[i - 1]
                        pair_counts[left << shift | a] -= count
                        key = left << shift | new
                        held = created_get(key)
                        if held is None:
                            created[key] = [wi]
                        else:
                            held.append(wi)
                        pair_counts[key] = get(key, 0) + count
                if i + 2 < n:
                    right = word[i + 2]
                    pair_counts[b << shift | right] -= count
                    if not (right == a and i + 3 < n and word[i + 3] == b):  # else the next occurrence adds it
                        key = new << shift | right
                        held = created_get(key)
                        if held is None:
                            created[key] = [wi]
                        else:
                            held.append(wi)
                        pair_counts[key] = get(key, 0) + count
                if out is None:
                    out = word[:i]
                else:
                    out += word[last:i]
                out.append(new)
                last = start = i + 2
                remaining -= 2 if a == b else 1
            else:
                start = i + 1
                remaining -= 1
        if out is not None:
            out += word[last:]
            words[wi] = out
    where.update(created)
    return created


def learn_bpe(
    inputs: Sequence[str | os.PathLike],
    n_codes: int,
    output: str | os.PathLike,
    *,
    progress: bool = True,
    workers: int | None = None,
    errors: str = "strict",
    chunk_bytes: int = COUNT_CHUNK_BYTES,
) -> None:
    """``fast learnbpe n_codes inputs...``: write codes ``LEFT RIGHT COUNT``, best merge first.

    Stops early, with a warning, when no adjacent pair is left (see ``learn_codes``).
    """
    counts = count_words(
        inputs, progress=progress, workers=workers, errors=errors, chunk_bytes=chunk_bytes, step="learn-bpe"
    )
    word_counts = {word.decode("utf-8"): count for word, count in counts.items()}
    codes = learn_codes(word_counts, n_codes, progress=progress)
    with textio.open_output(output) as sink:
        sink.write("".join(f"{left} {right} {count}\n" for left, right, count in codes).encode("utf-8"))
