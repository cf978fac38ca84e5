"""The metrics the benchmarks report, computed as their reference code computes them (all in percent).

- Sentence classification: ``acc``, ``f1`` (binary for two classes, else micro, as the original's
  ``glue.py``), ``mc`` (Matthews correlation); regression: ``prs`` / ``spr`` (Pearson / Spearman).
  scikit-learn and SciPy compute them, as in the original.
- Token classification: entity-level precision, recall and F1 from ``seqeval`` in its default mode
  (conlleval-compatible: a chunk starts at ``B-`` or at an ``I-`` whose type differs from the
  previous tag's, so IOB1 files score as conlleval scores them; micro average over entities), or
  word accuracy (POS).
- Extractive QA: exact match and F1 over normalized answer tokens, the best over the gold
  answers, averaged over questions (an unanswered question scores 0). ``squad``: the official
  SQuAD v1.1 script's normalization (lowercase, drop ASCII punctuation, drop ``a``/``an``/``the``,
  collapse whitespace). ``mlqa``: MLQA's ``mlqa_evaluation_v1.py`` (drop every Unicode punctuation
  character, the answer language's articles, and for zh one token per ideograph).
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Sequence

import numpy as np

from xlm.errors import XLMError

# the metric libraries each task type's evaluation needs: checked before training (finetune.run_task)
NEEDS = {"sentence": ("sklearn",), "tokens": ("seqeval",)}


def check_metric_libraries(task: str) -> None:
    """Raise :class:`XLMError` before a run when its evaluation would need a missing library."""
    for module in NEEDS.get(task, ()):
        _need(module)


def _need(module: str) -> None:
    """The metric libraries are the ``tasks`` extra; say so instead of a bare ImportError."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise XLMError(f"this metric needs the {module} package: pip install -e '.[tasks]' (seqeval, scikit-learn, "
                       f"scipy)")


# -- sentence tasks ---------------------------------------------------------------------------
def classification_scores(gold: Sequence[int], pred: Sequence[int], n_classes: int) -> dict[str, float]:
    _need("sklearn")
    from sklearn.metrics import f1_score, matthews_corrcoef

    gold, pred = np.asarray(gold), np.asarray(pred)
    if len(gold) == 0:
        raise XLMError("metrics: no examples to score")
    average = "binary" if n_classes == 2 else "micro"
    return {"acc": 100.0 * float((gold == pred).mean()),
            "f1": 100.0 * float(f1_score(gold, pred, average=average, zero_division=0)),
            "mc": 100.0 * float(matthews_corrcoef(gold, pred))}


def regression_scores(gold: Sequence[float], pred: Sequence[float]) -> dict[str, float]:
    """Pearson and Spearman correlations; NaN (reported as n/a) when either side is constant."""
    _need("scipy")
    from scipy.stats import pearsonr, spearmanr

    gold, pred = np.asarray(gold, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    if len(gold) < 2 or np.ptp(gold) == 0 or np.ptp(pred) == 0:
        return {"prs": math.nan, "spr": math.nan}
    return {"prs": 100.0 * float(pearsonr(pred, gold)[0]), "spr": 100.0 * float(spearmanr(pred, gold)[0])}


# -- token tasks --------------------------------------------------------------------------------
def entity_scores(gold: list[list[str]], pred: list[list[str]]) -> dict[str, float]:
    """seqeval's default (conlleval-compatible) mode, micro-averaged over entities."""
    _need("seqeval")
    from seqeval.metrics import f1_score, precision_score, recall_score

    return {"f1": 100.0 * float(f1_score(gold, pred, zero_division=0)),
            "precision": 100.0 * float(precision_score(gold, pred, zero_division=0)),
            "recall": 100.0 * float(recall_score(gold, pred, zero_division=0))}


def tag_accuracy(gold: list[list[str]], pred: list[list[str]]) -> dict[str, float]:
    n = sum(len(g) for g in gold)
    correct = sum(a == b for g, p in zip(gold, pred) for a, b in zip(g, p))
    return {"acc": 100.0 * correct / max(n, 1)}


# -- extractive QA ------------------------------------------------------------------------------
_ARTICLES = {
    "en": r"\b(a|an|the)\b",
    "es": r"\b(un|una|unos|unas|el|la|los|las)\b",
    "vi": r"\b(của|là|cái|chiếc|những)\b",
    "de": r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b",
}
MLQA_LANGS = ("en", "es", "hi", "vi", "de", "ar", "zh")
_CJK = re.compile("[\u4e00-\u9fa5]")


def _is_punct(ch: str) -> bool:
    return ch in string.punctuation or unicodedata.category(ch).startswith("P")


def normalize_squad(text: str) -> str:
    """The SQuAD v1.1 evaluation script's ``normalize_answer``."""
    text = "".join(ch for ch in text.lower() if ch not in string.punctuation)
    text = re.sub(_ARTICLES["en"], " ", text)
    return " ".join(text.split())


def normalize_mlqa(text: str, lang: str) -> str:
    """MLQA's ``normalize_answer(s, lang)``."""
    if lang not in MLQA_LANGS:
        raise XLMError(f"data.normalization: MLQA's normalization knows {', '.join(MLQA_LANGS)}, not {lang!r}")
    text = "".join(ch for ch in text.lower() if not _is_punct(ch))
    if lang in _ARTICLES:
        text = re.sub(_ARTICLES[lang], " ", text)
    elif lang == "ar":
        text = text.replace("ال", " ")
    if lang == "zh":  # "mixed segmentation": every ideograph a token, whitespace between the rest
        tokens: list[str] = []
        run = ""
        for ch in text:
            if _CJK.match(ch) or _is_punct(ch):
                tokens += run.split()
                run = ""
                tokens.append(ch)
            else:
                run += ch
        tokens += run.split()
    else:
        tokens = text.split()
    return " ".join(t for t in tokens if t.strip())


def _normalizer(normalization: str, lang: str):
    if normalization == "squad":
        return normalize_squad
    if normalization == "mlqa":
        return lambda s: normalize_mlqa(s, lang)
    raise XLMError(f"data.normalization: 'squad' or 'mlqa', got {normalization!r}")


def _f1(pred: list[str], gold: list[str]) -> float:
    same = sum((Counter(pred) & Counter(gold)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def qa_scores(answers: dict[str, list[str]], predictions: dict[str, str], normalization: str = "squad",
              lang: str = "en") -> dict[str, float]:
    """``em`` and ``f1`` over every question of ``answers`` (question id -> gold texts)."""
    norm = _normalizer(normalization, lang)
    em = f1 = 0.0
    for qid, golds in answers.items():
        if qid not in predictions:
            continue
        p = norm(predictions[qid])
        gs = [norm(g) for g in golds]
        em += max(float(p == g) for g in gs)
        f1 += max(_f1(p.split(), g.split()) for g in gs)
    n = max(len(answers), 1)
    return {"em": 100.0 * em / n, "f1": 100.0 * f1 / n}
