"""fastBPE-compatible BPE: learn codes, apply them, count words; the same bytes out, no C++ needed.

Semantics (those of glample/fastBPE, which XLM's data and checkpoints were made with):

* Words are the non-empty runs of bytes between ``' '`` and ``'\\n'``. Tabs, no-break spaces,
  NUL and ``'\\r'`` are part of words. A word is split into UTF-8 characters and ``</w>`` is
  appended to the last one (a NUL ends the character scan, as in fastBPE's C-string loop; see
  :func:`word_units`). There is no normalization and no unknown character.
* Codes: ``LEFT RIGHT COUNT`` per line, rank = line number. Applying repeatedly merges every
  non-overlapping occurrence, left to right, of the adjacent pair with the lowest rank. Output
  pieces are joined by ``'@@ '`` with ``</w>`` dropped: ``Roasted`` -> ``Ro@@ asted``.
* With a vocabulary (``TOKEN COUNT`` lines), out-of-vocabulary units are split back along their
  merges (see :class:`BPE`).
* ``apply_bpe_file`` copies every space and newline through (runs of spaces, empty lines, no
  final newline). ``BPE.apply`` on a list of strings collapses runs of spaces, like fastBPE's
  Python binding.
* ``get_vocab`` sorts by count descending, then by word bytes ascending.
* ``learn_bpe`` writes each merge with its true count: the number of adjacent occurrences of the
  pair over all words, weighted by word frequency, at the time of the merge. Merges come in
  fastBPE's order except among equal counts, where fastBPE's choice depends on hash-map order.
  Our tie rule is deterministic: the pair with the smallest (left id, right id) wins, where
  characters are numbered in order of first appearance in the input (inputs in the given order)
  and each merged token gets the next number. When no adjacent pair is left, learning stops
  early and logs a warning; fastBPE instead keeps printing count-0 duplicate merges that its
  own ``applybpe`` then refuses.

Modules: ``codes`` reads and checks codes and applybpe vocabularies, ``vocab`` counts words
(``getvocab``), ``learn`` learns merges (``learnbpe``), ``apply`` applies them (``applybpe``),
``fast`` is the optional ``tokenizers`` accelerator of ``apply``.

Speed: files are cut into newline-aligned chunks that worker processes rewrite in parallel
(``xlm.data.textio``), each distinct word being segmented once per process. Word segmentation uses
Hugging Face ``tokenizers`` when it is installed and provably identical for the codes at hand
(``xlm.data.bpe.fast``), else pure Python; both paths are tested against fastBPE's own output.
``scripts/bench/bpe.py`` measures all of this next to fastBPE.

Whitespace other than ``' '`` and ``'\\n'`` (CR, TAB, NBSP...) stays inside words, as in fastBPE;
each step warns, with counts, when its input holds some, because binarize (like the original
``preprocess.py``) splits on it (``xlm.data.whitespace``).

Deliberate differences from fastBPE: a final word not followed by a space or newline is kept
(fastBPE silently drops it when reading a file); malformed codes/vocabulary files and invalid
UTF-8 raise ``XLMError`` naming ``file:line`` (fastBPE asserts or passes bytes through);
``errors='replace'`` substitutes U+FFFD for invalid UTF-8 instead.
"""

from xlm.data.bpe.apply import BPE, apply_bpe_file, word_units
from xlm.data.bpe.codes import check_codes, read_bpe_vocab, read_codes
from xlm.data.bpe.learn import learn_bpe, learn_codes
from xlm.data.bpe.vocab import count_words, get_vocab

__all__ = [
    "BPE",
    "apply_bpe_file",
    "check_codes",
    "count_words",
    "get_vocab",
    "learn_bpe",
    "learn_codes",
    "read_bpe_vocab",
    "read_codes",
    "word_units",
]
