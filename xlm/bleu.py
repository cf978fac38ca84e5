"""BLEU two ways: sacrebleu on detokenized text (the score to publish), and the tokenized BLEU of
Moses' ``multi-bleu.perl`` (what the original XLM reports, for comparison with papers).

:func:`multi_bleu` reproduces ``scripts/generic/multi-bleu.perl`` of moses-smt/mosesdecoder (the
script the original XLM ships as ``xlm/evaluation/multi-bleu.perl``) rule for rule, as the perl
interpreter runs it on UTF-8 bytes: words split on ASCII whitespace only, ``-lc`` lowercases ASCII
letters only, clipped n-gram counts up to 4 over several references, the closest reference length
(ties: the shorter), a log of 0 taken as -9999999999. Checked against the script's own output on
fixed cases (tests/golden/multi_bleu.json). The original XLM's copy reads lines with ``chop``, which
drops the last character of a file that does not end with a newline; files here are read as lines.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from xlm.errors import XLMError


@dataclass
class MultiBleu:
    """``bleu`` in percent (0-100), n-gram ``precisions`` in percent, brevity penalty, lengths in words."""

    bleu: float
    precisions: list[float]
    bp: float
    ratio: float
    hyp_len: int
    ref_len: int

    def __str__(self) -> str:
        """The line ``multi-bleu.perl`` prints."""
        p = "/".join(f"{x:.1f}" for x in self.precisions)
        return (f"BLEU = {self.bleu:.2f}, {p} (BP={self.bp:.3f}, ratio={self.ratio:.3f}, "
                f"hyp_len={self.hyp_len}, ref_len={self.ref_len})")


def _words(line: str, lowercase: bool) -> list[bytes]:
    raw = line.encode("utf-8")
    return (raw.lower() if lowercase else raw).split()  # ASCII-only, as perl's lc and split on bytes


def _ngrams(words: list[bytes], n: int) -> Counter:
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def multi_bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]], lowercase: bool = False) -> MultiBleu:
    """Tokenized corpus BLEU of ``hypotheses`` against one or more reference sets (each a list of
    lines parallel to the hypotheses), as ``multi-bleu.perl [-lc] ref0 ref1 .. < hyp``.

    Raises :class:`XLMError` when a reference set has another number of lines than the hypotheses
    (the script would silently score the extra lines against nothing), or when the hypotheses are
    all empty while the references are not (the script dies dividing by zero).
    """
    for i, refs in enumerate(references):
        if len(refs) != len(hypotheses):
            raise XLMError(f"reference set {i}: {len(refs)} lines but {len(hypotheses)} hypotheses")
    if not references:
        raise XLMError("multi_bleu: no reference set")
    correct, total = [0] * 5, [0] * 5
    seen = [False] * 5  # the script's TOTAL[n] is undefined until a hypothesis has an n-gram
    hyp_len = ref_len = 0
    for s, hyp in enumerate(hypotheses):
        words = _words(hyp, lowercase)
        closest_diff, closest_len = 9999, 9999
        max_ref: dict[int, Counter] = {n: Counter() for n in range(1, 5)}
        for refs in references:
            ref = _words(refs[s], lowercase)
            diff = abs(len(words) - len(ref))
            if diff < closest_diff:
                closest_diff, closest_len = diff, len(ref)
            elif diff == closest_diff:
                closest_len = min(closest_len, len(ref))
            for n in range(1, 5):
                max_ref[n] |= _ngrams(ref, n)  # Counter union: the maximum count over references
        hyp_len += len(words)
        ref_len += closest_len
        for n in range(1, 5):
            for gram, count in _ngrams(words, n).items():
                seen[n] = True
                total[n] += count
                correct[n] += min(count, max_ref[n].get(gram, 0))
    prec = [correct[n] / total[n] if seen[n] and total[n] else 0.0 for n in range(1, 5)]
    if ref_len == 0:
        return MultiBleu(0.0, [0.0] * 4, 0.0, 0.0, 0, 0)  # the script prints this line (and exits 1)
    if hyp_len == 0:
        raise XLMError("multi_bleu: every hypothesis is empty (multi-bleu.perl dies dividing by zero)")
    bp = math.exp(1 - ref_len / hyp_len) if hyp_len < ref_len else 1.0
    log = lambda x: math.log(x) if x else -9999999999  # noqa: E731 (the script's my_log)
    bleu = bp * math.exp(sum(log(p) for p in prec) / 4)
    return MultiBleu(100 * bleu, [100 * p for p in prec], bp, hyp_len / ref_len, hyp_len, ref_len)


def sacre_bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]], lowercase: bool = False,
               tokenize: str = "13a") -> float:
    """Corpus BLEU (percent) of detokenized text with sacrebleu's standard settings (Post, 2018);
    ``lowercase`` for models trained on lowercased text. Needs the ``mt`` extra (``pip install -e '.[mt]'``)."""
    return sacre_bleu_signed(hypotheses, references, lowercase, tokenize)[0]


def sacre_bleu_signed(hypotheses: Sequence[str], references: Sequence[Sequence[str]], lowercase: bool = False,
                      tokenize: str = "13a") -> tuple[float, str]:
    """:func:`sacre_bleu` and sacrebleu's signature of the settings (to report next to the score)."""
    try:
        import sacrebleu
    except ImportError:
        raise XLMError("sacrebleu is not installed: pip install -e '.[mt]'") from None
    for i, refs in enumerate(references):
        if len(refs) != len(hypotheses):
            raise XLMError(f"reference set {i}: {len(refs)} lines but {len(hypotheses)} hypotheses")
    metric = sacrebleu.BLEU(lowercase=lowercase, tokenize=tokenize)
    score = metric.corpus_score(list(hypotheses), [list(r) for r in references]).score
    return float(score), str(metric.get_signature())
