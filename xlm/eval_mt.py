"""BLEU during training: ``{split}_{l1}-{l2}_mt_bleu``, as the original's evaluator with ``--eval_bleu``
(facebookresearch/XLM ``xlm/evaluation/evaluator.py``, ``evaluate_mt``).

Each source of the split is translated (greedy with ``train.beam_size: 1``, else beam search with
``length_penalty`` and ``early_stopping``; ``max_len = 1.5 * longest source + 10``, the original's),
hypotheses and references are turned into words with the BPE joins removed (the original's
``sed -r 's/(@@ )|(@@ ?$)//g'``), and scored by :func:`xlm.bleu.multi_bleu`, equal to Moses'
``multi-bleu.perl`` (case-sensitive, tokenized text: the original's number, not sacrebleu's; use
``python -m xlm.translate`` and ``python -m xlm.evaluate bleu`` for detokenized sacrebleu). Batches are
dealt to ranks and the sentences gathered, so every rank reports the same figure.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from xlm.bleu import multi_bleu
from xlm.data.datasets import ParallelDataset
from xlm.distributed import all_gather_objects
from xlm.generation import translate_ids
from xlm.objectives.seq2seq import split_pairs

_BPE_JOIN = re.compile(r"(@@ )|(@@ ?$)")


def to_text(ids: list[int] | np.ndarray, id2word: list[str]) -> str:
    """Word ids (no ``</s>``) -> one line of words with BPE joins removed."""
    return _BPE_JOIN.sub("", " ".join(id2word[int(i)] for i in ids))


@dataclass
class BleuEvaluator:
    """``score(model, dataset, device)``: tokenized BLEU (0-100) of translating a pair dataset."""

    id2word: list[str]
    batch_size: int
    beam_size: int = 1
    length_penalty: float = 1.0
    early_stopping: bool = False
    rank: int = 0
    world_size: int = 1

    @torch.no_grad()
    def score(self, model: nn.Module, data: ParallelDataset, device: torch.device,
              autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext) -> float:
        mine: list[tuple[int, str, str]] = []
        n = 0
        usable = model.cfg.max_positions - model.cfg.position_offset
        for i, raw in enumerate(data.eval_batches(self.batch_size)):
            if i % self.world_size == self.rank:  # this rank's share; the others' batches are only counted
                src, src_len, tgt, tgt_len, lang1, lang2 = split_pairs(raw)
                max_len = min(int(1.5 * int(src_len.max()) + 10), usable)
                with autocast():
                    out = translate_ids(model, torch.from_numpy(src).to(device), torch.from_numpy(src_len).to(device),
                                        lang1, lang2, beam_size=self.beam_size, length_penalty=self.length_penalty,
                                        early_stopping=self.early_stopping, max_len=max_len)
                for k, tokens in enumerate(out.tokens):
                    ref = tgt[k, 1 : tgt_len[k] - 1]
                    mine.append((n + k, to_text(tokens, self.id2word), to_text(ref, self.id2word)))
            n += len(raw.lengths)
        lines = sorted(x for part in all_gather_objects(mine) for x in part)
        hyps = [h for _, h, _ in lines]
        if not any(h.split() for h in hyps):
            return 0.0  # multi-bleu.perl dies on an all-empty output; an untrained model may produce one
        return multi_bleu(hyps, [[r for _, _, r in lines]]).bleu
