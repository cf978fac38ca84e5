"""The model steps of the translation objectives, for their registry entries (``ae``, ``mt``, ``bt``) to call.

As the original trainer's ``mt_step`` and ``bt_step`` (facebookresearch/XLM ``xlm/trainer.py``):
the encoder reads the source bidirectionally, the decoder reads the target causally and predicts
each next target token (:func:`translation_loss`); denoising auto-encoding is the same step with
``src`` a noisy copy of the target (:mod:`xlm.noise`); online back-translation first translates
a monolingual batch greedily, without gradients and in eval mode (:func:`back_translate`), then
trains on the synthetic source and the real target. These are functions of tensors; batching,
λ schedules and metric names belong to the objective registry (not in this branch yet).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from xlm.data.dictionary import EOS_INDEX
from xlm.generation import translate_ids
from xlm.model.decoder import EncoderDecoder
from xlm.objectives.seq2seq import next_token_targets


class StepLoss(NamedTuple):
    loss: Tensor     # mean cross-entropy over predicted target tokens (scalar, differentiable)
    n_correct: int   # argmax hits, for the ``_acc`` metric
    n_words: int     # predicted tokens, for ``_ppl`` = exp(sum of losses / n_words)


def translation_loss(model: EncoderDecoder, src: Tensor, src_len: Tensor, src_lang: int, tgt: Tensor,
                     tgt_len: Tensor, tgt_lang: int) -> StepLoss:
    """Teacher-forced loss: position ``t < len - 1`` of ``tgt`` ``(batch, tgt)`` predicts ``tgt[t + 1]``
    (the original's ``pred_mask = alen < len2 - 1``, ``y = x2[1:]``); both sides framed ``</s> .. </s>``."""
    h = model.teacher_forced(src, src_len, src_lang, tgt, tgt_len, tgt_lang)
    pred_mask, y = next_token_targets(tgt, tgt_len)  # the rule of the ae/mt/bt objectives' batches
    scores = model.decoder.predict(h[pred_mask])
    loss = F.cross_entropy(scores.float(), y)
    return StepLoss(loss, int((scores.argmax(-1) == y).sum()), int(y.numel()))


class BackTranslated(NamedTuple):
    x: Tensor        # (batch, len) framed </s> .. </s>, right-padded
    lengths: Tensor  # (batch,)
    padded: bool     # some row shorter than len (known on the host: no device read)


@torch.no_grad()
def back_translate(model: EncoderDecoder, x: Tensor, lengths: Tensor, lang: int, other_lang: int,
                   eos_index: int = EOS_INDEX) -> BackTranslated:
    """Greedy translation of ``x`` ``(batch, seq)`` into ``other_lang``, framed and right-padded, with
    its lengths; no gradient, eval mode (restored after), ``max_len`` the original's
    ``1.3 * longest + 5``. The result is a constant input for the training step."""
    max_len = min(int(1.3 * int(lengths.max()) + 5), model.cfg.max_positions - model.cfg.position_offset)
    hyp = translate_ids(model, x, lengths, lang, other_lang, max_len=max_len, eos_index=eos_index)
    n = [len(t) + 2 for t in hyp.tokens]
    out = torch.full((len(n), max(n)), model.pad_index, dtype=torch.long)
    for i, t in enumerate(hyp.tokens):
        out[i, : n[i]] = torch.tensor([eos_index, *t, eos_index])
    return BackTranslated(out.to(x.device, non_blocking=True), torch.tensor(n).to(x.device, non_blocking=True),
                          min(n) < max(n))
