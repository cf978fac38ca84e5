"""BTMLM, back-translation masked language modeling (ERNIE-M, Ouyang et al., 2021, arXiv 2012.15674,
section 3.2 "Back-translation Masked Language Modeling" and its Figure 3).

Configured as ``btmlm: [en>fr]``: monolingual ``en`` sentences (boundaries from the ``.idx`` files),
pseudo-target language ``fr``. One batch row is laid out as a TLM pair::

    [</s> s </s>][</s> p_1 .. p_k </s>]     positions restart at the second segment,
     lang = en    lang = fr                   k = objectives.btmlm_k (0: k = len(s))

**Step 1** (:func:`xlm.objectives.batch.prepare`, ``torch.no_grad``, model in eval mode): the
``p_i`` are ``<mask>`` placeholders carrying the target language id; the model fills each with its
prediction over real words (ids >= 14): ``argmax`` or, with ``btmlm_generation: sample``, a draw
from the softmax. No gradient reaches this step: the pseudo tokens enter step 2 as plain ids.
**Step 2**: BERT masking of ``s`` only (the pseudo tokens are never targets), and ``s`` is restored
from ``[masked s][pseudo tokens]``.

Attention, in both steps, is CAMLM's rule (:mod:`xlm.objectives.camlm`): a token attends only to
the other segment, so in step 1 the placeholders read the sentence alone and in step 2 a masked
token of ``s`` is restored from the pseudo translation alone::

    query \\ key     s side   pseudo side
    s side           no        yes
    pseudo side      yes       no

This is our reading of the paper's Figure 3 (the second step learns alignment only if it cannot
fall back on the sentence's own context); the full text's value of ``k`` could not be checked here,
so the default ``btmlm_k: 0`` (as many pseudo tokens as the sentence has) is our choice -- see
docs/objectives.md.

Randomness: the masking uses the task's batch generator (``TAG_MASK`` in training); the sampling of
step 1 uses a torch generator seeded from its own tag ``TAG_BTMLM`` and a key drawn after the
masking, so a resumed run samples exactly the tokens an uninterrupted one does.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from xlm.data.datasets import RawBatch
from xlm.data.dictionary import EOS_INDEX, MASK_INDEX, N_SPECIAL, PAD_INDEX
from xlm.data.sampling import TAG_BTMLM, torch_seed
from xlm.objectives.batch import Batch, as_batch
from xlm.objectives.camlm import cross_attention_mask
from xlm.objectives.masking import Masker

if TYPE_CHECKING:
    from xlm.objectives.tasks import Task


@dataclass
class Generation:
    """Step 1 of a BTMLM batch: fill ``placeholders`` of ``x`` (the unmasked sentence) with predictions."""

    x: Tensor  # (bs, slen) sentence unmasked, placeholders <mask>
    sample: bool
    seed: int  # torch generator seed for sampling (TAG_BTMLM)
    # the placeholders' row-major flat indices and whether a row is padded, computed on the host, so that
    # generating needs no host synchronization (boolean indexing would read the count from the device)
    index: Tensor  # (n_placeholders,) int64
    padded: bool

    @property
    def placeholders(self) -> Tensor:
        """``(bs, slen)`` bool: True at the placeholders (for inspection; generation uses ``index``)."""
        mask = torch.zeros(self.x.numel(), dtype=torch.bool, device=self.x.device)
        mask[self.index] = True
        return mask.view_as(self.x)

    def to(self, device: torch.device) -> Generation:
        move = lambda t: t.to(device, non_blocking=True)  # noqa: E731
        return replace(self, x=move(self.x), index=move(self.index))

    def run(self, model: nn.Module, batch: Batch) -> Batch:
        """``batch`` with its placeholders replaced by the model's pseudo tokens (call under no_grad)."""
        was_training = model.training
        model.eval()
        try:
            h = model(self.x, padded=self.padded, **batch.inputs())
            logits = model.predict(h.reshape(-1, h.shape[-1]).index_select(0, self.index)).float()
        finally:
            model.train(was_training)
        logits[:, :N_SPECIAL] = float("-inf")  # pseudo tokens are real words
        if self.sample:
            gen = torch.Generator(device=logits.device)
            gen.manual_seed(self.seed)
            tokens = torch.multinomial(torch.softmax(logits, -1), 1, generator=gen).squeeze(1)
        else:
            tokens = logits.argmax(-1)
        x = batch.x.clone()
        x.view(-1).index_copy_(0, self.index, tokens.to(x.dtype))
        return replace(batch, x=x)


def n_pseudo(lengths: np.ndarray, k: int) -> np.ndarray:
    """Pseudo tokens per row: ``k``, or with ``k == 0`` the sentence's own length (``lengths - 2``)."""
    return np.full_like(lengths, k) if k > 0 else lengths - 2


def layout(raw: RawBatch, x_src: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    """``[x_src row][</s> <mask>*k </s>]`` -> ``(x, lengths, langs, positions, second, placeholders)``."""
    if raw.lang2 is None:
        raise ValueError("BTMLM needs sentence batches that name the target language (RawBatch.lang2)")
    n1 = raw.lengths
    n2 = n_pseudo(n1, k) + 2
    lengths = n1 + n2
    col = np.arange(int(lengths.max()))[None, :]
    valid = col < lengths[:, None]
    second = col >= n1[:, None]
    x = np.full((len(n1), col.shape[1]), PAD_INDEX, dtype=np.int64)
    w = x_src.shape[1]
    x[:, :w] = np.where(col[:, :w] < n1[:, None], x_src, PAD_INDEX)
    pos2 = col - n1[:, None]
    placeholders = second & valid & (pos2 > 0) & (pos2 < n2[:, None] - 1)
    x[second & valid] = EOS_INDEX
    x[placeholders] = MASK_INDEX
    positions = np.where(second, pos2, col)
    positions[~valid] = 0
    lang1 = raw.first_lang
    langs = np.where(second, raw.lang2, lang1).astype(np.int64)
    return x, lengths, langs, positions.astype(np.int64), second, placeholders


def btmlm_batch(task: Task, raw: RawBatch, masker: Masker, gen: np.random.Generator, train: bool = True) -> Batch:
    """Step-2 batch (sentence masked, placeholders still ``<mask>``) with step 1 pending."""
    opts = masker.options
    src, pred_src, targets = masker(raw.x, gen, train)  # only the sentence is masked and predicted
    x1, lengths, langs, positions, second, placeholders = layout(raw, raw.x, opts.btmlm_k)
    x2 = layout(raw, src, opts.btmlm_k)[0]
    pred_mask = np.zeros(x1.shape, dtype=bool)
    pred_mask[:, : pred_src.shape[1]] = pred_src
    full = RawBatch(x2, lengths, langs, positions, raw.lang2)
    seed = torch_seed(TAG_BTMLM, int(gen.integers(2**62)))
    pending = Generation(torch.from_numpy(x1), opts.btmlm_generation == "sample", seed,
                         torch.from_numpy(np.flatnonzero(placeholders)), bool((lengths < x1.shape[1]).any()))
    return as_batch(task, full, x2, pred_mask, targets, causal=False,
                    attn_mask=cross_attention_mask(second), pending=pending)
