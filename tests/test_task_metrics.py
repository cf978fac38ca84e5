"""Metrics against reference values: seqeval itself, the official SQuAD v1.1 and MLQA scripts, sklearn/SciPy.

The SQuAD and MLQA numbers below were produced by running the official scripts' scoring
functions (``evaluate-v1.1.py``; MLQA's ``mlqa_evaluation_v1.py``) on these exact cases.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from seqeval.metrics import classification_report, f1_score

from xlm.errors import XLMError
from xlm.tasks.metrics import (
    classification_scores,
    entity_scores,
    normalize_mlqa,
    qa_scores,
    regression_scores,
    tag_accuracy,
)
from xlm.tasks.mining import best_threshold, mine, prf

SQUAD_CASES = [  # id, gold answers, prediction (None: unanswered)
    ("q1", ["Denver Broncos", "The Denver Broncos"], "the Denver Broncos."),
    ("q2", ["Saint Bernadette Soubirous"], "Bernadette Soubirous in 1858"),
    ("q3", ["a golden statue of the Virgin Mary"], "golden statue"),
    ("q4", ["1858"], ""),
    ("q5", ["Notre Dame's"], "notre dame s"),
    ("q6", ["Father Sorin"], None),
    ("q7", ["café – bar"], "Café bar"),
]
# the official script on SQUAD_CASES: {"exact_match": 14.285714285714286, "f1": 47.75510204081633}
SQUAD_OFFICIAL = {"em": 14.285714285714286, "f1": 47.75510204081633}
SQUAD_PER_CASE = {"q1": (1, 1.0), "q2": (0, 0.5714285714285715), "q3": (0, 0.5714285714285715), "q4": (0, 0.0),
                  "q5": (0, 0.4), "q6": (0, 0.0), "q7": (0, 0.8)}
MLQA_CASES = [  # lang, gold, prediction, official EM, official F1, official normalized prediction
    ("zh", "北京大学", "北京大学的", 0, 0.888888888888889, "北 京 大 学 的"),
    ("zh", "2008年北京奥运会", "北京 奥运会。", 0, 0.8333333333333333, "北 京 奥 运 会"),
    ("de", "die Normandie", "Normandie", 1, 1.0, "normandie"),
    ("es", "el río Sena", "río Sena,", 1, 1.0, "río sena"),
    ("ar", "الكتاب", "كتاب", 1, 1.0, "كتاب"),
    ("vi", "những con mèo", "con mèo", 1, 1.0, "con mèo"),
    ("hi", "भारत का", "भारत", 0, 0.6666666666666666, "भारत"),
    ("en", "café – bar", "Café bar", 1, 1.0, "café bar"),
    ("en", "The «Broncos»", "broncos", 1, 1.0, "broncos"),
]


def test_squad_em_f1_equal_the_official_script():
    answers = {qid: golds for qid, golds, _ in SQUAD_CASES}
    preds = {qid: p for qid, _, p in SQUAD_CASES if p is not None}
    got = qa_scores(answers, preds, "squad")
    assert got == pytest.approx(SQUAD_OFFICIAL, abs=1e-9)
    for qid, golds, p in SQUAD_CASES:
        one = qa_scores({qid: golds}, {qid: p} if p is not None else {}, "squad")
        assert (one["em"] / 100, one["f1"] / 100) == pytest.approx(SQUAD_PER_CASE[qid], abs=1e-12), qid


@pytest.mark.parametrize(("lang", "gold", "pred", "em", "f1", "norm"), MLQA_CASES)
def test_mlqa_per_language_normalization_equals_the_official_script(lang, gold, pred, em, f1, norm):
    assert normalize_mlqa(pred, lang) == norm
    got = qa_scores({"q": [gold]}, {"q": pred}, "mlqa", lang)
    assert (got["em"] / 100, got["f1"] / 100) == pytest.approx((em, f1), abs=1e-12)


def test_mlqa_refuses_a_language_it_has_no_rules_for():
    with pytest.raises(XLMError, match="MLQA's normalization knows en, es, hi, vi, de, ar, zh, not 'fr'"):
        qa_scores({"q": ["x"]}, {"q": "x"}, "mlqa", "fr")


def test_entity_f1_is_seqeval_default_mode_including_iob1():
    # CoNLL-2003 is IOB1: an entity may start with I-; seqeval's default mode reads it as conlleval does
    gold = [["I-PER", "I-PER", "O", "I-LOC", "B-LOC"], ["O", "B-ORG", "I-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "I-LOC", "I-LOC"], ["O", "B-ORG", "O", "B-MISC"]]
    got = entity_scores(gold, pred)
    # gold entities: PER(0-1), LOC(3), LOC(4), ORG(1-2); predicted: PER(0-1), LOC(3-4), ORG(1), MISC(3): 1 correct
    assert got["precision"] == pytest.approx(25.0) and got["recall"] == pytest.approx(25.0)
    assert got["f1"] == pytest.approx(100 * f1_score(gold, pred)) == pytest.approx(25.0)
    report = classification_report(gold, pred, output_dict=True, zero_division=0)
    assert got["f1"] == pytest.approx(100 * report["micro avg"]["f1-score"])
    assert tag_accuracy(gold, pred)["acc"] == pytest.approx(100 * 5 / 9)


def test_sentence_metrics_as_glue_py():
    gold, pred = [0, 1, 1, 0, 1, 1], [0, 1, 0, 0, 1, 0]
    got = classification_scores(gold, pred, 2)  # binary F1 of class 1: p=1, r=0.5
    assert got["acc"] == pytest.approx(100 * 4 / 6) and got["f1"] == pytest.approx(100 * 2 / 3)
    assert got["mc"] == pytest.approx(50.0)  # (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = 4 / 8
    three = classification_scores([0, 1, 2, 2], [0, 2, 2, 2], 3)
    assert three["f1"] == pytest.approx(three["acc"]) == pytest.approx(75.0)  # micro F1 = accuracy
    gold, pred = [1.0, 2.0, 3.0, 4.0], [1.1, 2.5, 2.4, 3.6]
    r = regression_scores(gold, pred)  # Spearman: 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 12 / 60
    assert r["spr"] == pytest.approx(80.0) and r["prs"] == pytest.approx(100 * np.corrcoef(gold, pred)[0, 1])
    assert math.isnan(regression_scores([1.0, 2.0], [3.0, 3.0])["prs"])  # constant predictions: n/a, not 0


def test_margin_mining_threshold_is_chosen_on_gold():
    # candidates (score, src, tgt), best first; gold has 3 pairs, the 3rd candidate is wrong
    cands = [(1.30, "a", "A"), (1.25, "b", "B"), (1.20, "c", "X"), (1.10, "d", "D"), (0.90, "e", "E")]
    threshold, s = best_threshold(cands, {("a", "A"), ("b", "B"), ("d", "D")})
    assert threshold == pytest.approx(1.0) and s == pytest.approx(prf(3, 4, 3))  # keep 4: P 75, R 100
    assert s["f1"] == pytest.approx(100 * 2 * 0.75 / 1.75)
    # identical sentences on both sides are mined as pairs, each sentence used once
    x = torch.eye(4)[[0, 1, 2, 3]] + 0.01
    y = torch.eye(4)[[2, 0, 3, 1]] + 0.01
    pairs = sorted((i, j) for _, i, j in mine(x, y, k=2))
    assert pairs == [(0, 1), (1, 3), (2, 0), (3, 2)]
