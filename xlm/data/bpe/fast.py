"""Optional accelerator: Hugging Face ``tokenizers`` (Rust) merges words the way fastBPE does.

Used only when ``tokenizers`` is importable and only where its result is provably the same:

* ``tokenizers`` merges by a priority queue of (rank, position), fastBPE merges every occurrence
  of the best pair and then looks again. The two agree when every new pair outranks the merge
  that created it, which holds when each side of each code is a single character (with or without
  ``</w>``) or the product of an earlier code (``well_formed``). Learned codes always are.
* Words holding NUL go the pure-Python way (fastBPE's C-string scan treats NUL specially).
* A character that no code mentions comes back as the unknown marker; such a character can take
  part in no merge in fastBPE either, so the marker is simply replaced by the character again.

The pure-Python path stays the reference and is tested against fastBPE on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

END = "</w>"
_UNKNOWN = "\0unknown\0"  # never a unit here: words with NUL never reach the accelerator


def _atom(side: str) -> bool:
    return len(side) == 1 or (len(side) == 1 + len(END) and side.endswith(END))


def well_formed(codes: Sequence[tuple[str, str, int]]) -> bool:
    """Each side is one character (``</w>`` allowed) or the concatenation of an earlier code."""
    made: set[str] = set()
    for left, right, _ in codes:
        if not (_atom(left) or left in made) or not (_atom(right) or right in made):
            return False
        made.add(left + right)
    return True


def make_merger(codes: Sequence[tuple[str, str, int]]) -> Callable[[str], list[str] | None] | None:
    """``word -> units`` (``None`` when the word must go the pure-Python way); ``None`` if unusable."""
    try:
        from tokenizers import models
    except ImportError:
        return None
    if not well_formed(codes):
        return None
    vocab: dict[str, int] = {_UNKNOWN: 0}
    for left, right, _ in codes:
        for token in (left, right, left + right):
            vocab.setdefault(token, len(vocab))
        for side in (left, right):  # a character seen anywhere may be word-final or not
            char = side[0]
            vocab.setdefault(char, len(vocab))
            vocab.setdefault(char + END, len(vocab))
    merges = [(left, right) for left, right, _ in codes]
    model = models.BPE(vocab=vocab, merges=merges, unk_token=_UNKNOWN, end_of_word_suffix=END)
    tokenize = model.tokenize
    known = {token for token in vocab if len(token) == 1}

    def merge(word: str) -> list[str] | None:
        if "\0" in word:
            return None
        units = [token.value for token in tokenize(word)]
        if _UNKNOWN in units:  # one marker per unknown character, in order
            unknown = iter([char for char in word if char not in known])
            last_unknown = units[-1] == _UNKNOWN
            units = [next(unknown) if unit == _UNKNOWN else unit for unit in units]
            if last_unknown:
                units[-1] += END
        return units

    return merge
