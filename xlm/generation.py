"""Decoding: greedy, beam search and sampling, batched, with an incremental key/value cache.

Two users: translation (:func:`translate_ids`, an :class:`~xlm.model.decoder.EncoderDecoder`) and
continuation of prompts by a CLM (:func:`generate`, a causal :class:`~xlm.model.TransformerModel`).
Conventions are the original's (facebookresearch/XLM ``TransformerModel.generate`` /
``generate_beam`` and ``BeamHypotheses``): ``</s>`` (``eos_index``) starts every output; ``max_len``
counts that start and the final ``</s>``, so an output has at most ``max_len - 2`` words; a
hypothesis still open at the last step ends there (its last word is scored, then replaced by ``</s>``).
A hypothesis of ``n`` words has length ``n + 1`` in the length penalty: its score is
``sum(log p) / (n + 1) ** length_penalty``. Nothing here depends on the device: tensors stay where the
model is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from xlm.data.dictionary import EOS_INDEX
from xlm.errors import XLMError
from xlm.model.decoder import EncoderDecoder, KVCache, run_layers
from xlm.model.transformer import TransformerModel


@dataclass
class Hypotheses:
    """Best output per input: ``tokens`` (words only, no ``</s>``), ``logprob`` their summed log-probability
    under the model (``(batch,)``, on the CPU), ``score`` the length-normalized score beam search ranks by."""

    tokens: list[list[int]]
    logprob: Tensor
    score: Tensor


class BeamHypotheses:
    """The n best finished hypotheses of one input (the original's ``BeamHypotheses``, same rules)."""

    def __init__(self, n_hyp: int, max_len: int, length_penalty: float, early_stopping: bool):
        self.max_len = max_len - 1  # ignoring the start symbol
        self.length_penalty = length_penalty
        self.early_stopping = early_stopping
        self.n_hyp = n_hyp
        self.hyp: list[tuple[float, list[int], float]] = []  # (score, words, sum of log-probs)
        self.worst_score = 1e9

    def __len__(self) -> int:
        return len(self.hyp)

    def add(self, words: list[int], sum_logprobs: float) -> None:
        score = sum_logprobs / (len(words) + 1) ** self.length_penalty
        if len(self) < self.n_hyp or score > self.worst_score:
            self.hyp.append((score, words, sum_logprobs))
            if len(self) > self.n_hyp:
                ranked = sorted((s, i) for i, (s, _, _) in enumerate(self.hyp))
                del self.hyp[ranked[0][1]]
                self.worst_score = ranked[1][0]
            else:
                self.worst_score = min(score, self.worst_score)

    def is_done(self, best_sum_logprobs: float) -> bool:
        """Enough hypotheses, and none still open can beat the worst of them (at the longest length)."""
        if len(self) < self.n_hyp:
            return False
        if self.early_stopping:
            return True
        return self.worst_score >= best_sum_logprobs / self.max_len**self.length_penalty


class _Stepper:
    """Log-probabilities of the next token for every row of ``generated``; owns the cache.

    ``pad_left`` ``(rows,)``: left padding of each prompt (CLM), whose positions start after it and
    whose keys are never attended. Without the cache the whole prefix is recomputed at every step.
    """

    def __init__(self, model: TransformerModel, lang: int | None, use_cache: bool, src_enc: Tensor | None = None,
                 src_len: Tensor | None = None, pad_left: Tensor | None = None):
        self.model, self.lang, self.use_cache = model, lang, use_cache
        self.src_enc, self.src_len, self.pad_left = src_enc, src_len, pad_left
        self.cache = KVCache() if use_cache else None

    def __call__(self, generated: Tensor) -> Tensor:
        past = self.cache.length if self.cache is not None else 0
        x = generated[:, past:]
        positions = key_valid = None
        if self.pad_left is not None:
            dev = generated.device
            positions = (torch.arange(past, generated.shape[1], device=dev)[None] - self.pad_left[:, None]).clamp(min=0)
            key_valid = torch.arange(generated.shape[1], device=dev)[None] >= self.pad_left[:, None]
        h = run_layers(self.model, x, positions=positions, langs=self.lang, src_enc=self.src_enc,
                       src_len=self.src_len, cache=self.cache, key_valid=key_valid)
        return F.log_softmax(self.model.predict(h[:, -1]).float(), dim=-1)

    def reorder(self, index: Tensor) -> None:
        """Rows move only among the beams of one input (see :func:`_beam`): the source stays as it is."""
        if self.cache is not None:
            self.cache.reorder(index, cross=False)
        if self.pad_left is not None:
            self.pad_left = self.pad_left.index_select(0, index)


def _filter(logits: Tensor, temperature: float, top_k: int, top_p: float) -> Tensor:
    """Logits to sample from: divided by ``temperature``, all but the ``top_k`` best and outside the
    smallest set of probability ``>= top_p`` (nucleus, Holtzman et al. 2020) set to -inf; the best
    token always stays."""
    logits = logits / temperature
    if 0 < top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        drop = cum - sorted_logits.softmax(dim=-1) >= top_p  # mass before this token already reaches top_p
        drop[:, 0] = False
        logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return logits


def _greedy(stepper: _Stepper, start: Tensor, steps: int, eos: int, pad: int, length_penalty: float,
            sample: bool, temperature: float, top_k: int, top_p: float,
            generator: torch.Generator | None) -> Hypotheses:
    rows = start.shape[0]
    generated, dev = start, start.device
    open_ = torch.ones(rows, dtype=torch.bool, device=dev)
    logprob = torch.zeros(rows, device=dev)
    n_words = torch.zeros(rows, dtype=torch.long, device=dev)
    for step in range(steps):
        logp = stepper(generated)
        if sample:
            probs = _filter(logp, temperature, top_k, top_p).softmax(dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        else:
            nxt = logp.argmax(dim=-1)
        logprob += torch.where(open_, logp.gather(1, nxt[:, None]).squeeze(1), 0.0)
        last = step == steps - 1
        n_words += (open_ & (nxt != eos)).long() if not last else 0
        generated = torch.cat([generated, torch.where(open_, nxt, pad)[:, None]], dim=1)
        open_ = open_ & (nxt != eos)
        if not bool(open_.any()):
            break
    new = generated[:, start.shape[1]:].tolist()
    tokens = [seq[:n] for seq, n in zip(new, n_words.tolist())]
    score = logprob / (n_words + 1).to(logprob.dtype) ** length_penalty
    return Hypotheses(tokens, logprob.cpu(), score.cpu())


def _beam(stepper: _Stepper, start: Tensor, steps: int, beam_size: int, eos: int, pad: int,
          length_penalty: float, early_stopping: bool) -> Hypotheses:
    """The original's ``generate_beam``; ``start`` ``(batch * beam_size, t0)``, beams of an input adjacent."""
    rows, t0 = start.shape
    bs, dev = rows // beam_size, start.device
    generated = start
    beam_scores = torch.zeros(bs, beam_size, device=dev)
    beam_scores[:, 1:] = -1e9  # all beams start equal: only the first may expand at the first step
    beam_scores = beam_scores.view(-1)
    hyps = [BeamHypotheses(beam_size, steps + 1, length_penalty, early_stopping) for _ in range(bs)]
    done = [False] * bs
    for step in range(steps):
        last = step == steps - 1
        logp = stepper(generated)
        n_words = logp.shape[-1]
        scores = (logp + beam_scores[:, None]).view(bs, beam_size * n_words)
        top_scores, top_ids = scores.topk(2 * beam_size, dim=1, largest=True, sorted=True)
        top_scores, top_ids = top_scores.tolist(), top_ids.tolist()
        words_so_far: list[list[int]] | None = None
        batch: list[tuple[float, int, int]] = []
        for b in range(bs):
            done[b] = done[b] or hyps[b].is_done(top_scores[b][0])
            if done[b]:
                batch.extend([(0.0, pad, b * beam_size)] * beam_size)
                continue
            sent: list[tuple[float, int, int]] = []
            for idx, value in zip(top_ids[b], top_scores[b]):
                beam_id, word = divmod(idx, n_words)
                row = b * beam_size + beam_id
                if word == eos or last:
                    if words_so_far is None:
                        words_so_far = generated[:, t0:].tolist()
                    hyps[b].add(words_so_far[row], value)
                else:
                    sent.append((value, word, row))
                if len(sent) == beam_size:
                    break
            batch.extend(sent or [(0.0, pad, b * beam_size)] * beam_size)
        beam_scores = torch.tensor([s for s, _, _ in batch], device=dev)
        words = torch.tensor([w for _, w, _ in batch], device=dev, dtype=generated.dtype)
        index = torch.tensor([r for _, _, r in batch], device=dev)
        generated = torch.cat([generated.index_select(0, index), words[:, None]], dim=1)
        stepper.reorder(index)
        if all(done):
            break
    best = [max(h.hyp, key=lambda x: x[0]) for h in hyps]
    return Hypotheses([w for _, w, _ in best], torch.tensor([lp for _, _, lp in best]),
                      torch.tensor([s for s, _, _ in best]))


def _check(beam_size: int, max_len: int, temperature: float, top_k: int, top_p: float, sample: bool) -> None:
    if beam_size < 1:
        raise XLMError(f"beam_size: must be >= 1, got {beam_size}")
    if max_len < 2:
        raise XLMError(f"max_len: must be >= 2 (the start symbol and </s>), got {max_len}")
    if sample and beam_size > 1:
        raise XLMError("sampling draws one sequence per input: use beam_size 1 with sample=True")
    if temperature <= 0 or top_k < 0 or not 0 < top_p <= 1:
        raise XLMError(f"sampling: temperature > 0, top_k >= 0, 0 < top_p <= 1 required "
                       f"(got {temperature}, {top_k}, {top_p})")


@torch.no_grad()
def translate_ids(model: EncoderDecoder, src: Tensor, src_len: Tensor, src_lang: int, tgt_lang: int, *,
                  beam_size: int = 1, length_penalty: float = 1.0, early_stopping: bool = False, max_len: int = 200,
                  sample: bool = False, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                  use_cache: bool = True, eos_index: int = EOS_INDEX, pad_index: int | None = None,
                  generator: torch.Generator | None = None) -> Hypotheses:
    """Translate ``src`` ``(batch, src_len)`` (framed ``</s> w.. </s>``, right-padded) into ``tgt_lang``.

    ``beam_size`` 1 is greedy (or sampling with ``sample=True``). Raises :class:`XLMError` on
    impossible settings. With ``use_cache=False`` every step recomputes the whole prefix (the
    benchmark's baseline; same tokens). ``pad_index`` defaults to the model's.
    """
    _check(beam_size, max_len, temperature, top_k, top_p, sample)
    pad_index = model.pad_index if pad_index is None else pad_index
    if max_len > model.cfg.max_positions:
        raise XLMError(f"max_len: {max_len} exceeds model.max_positions ({model.cfg.max_positions})")
    was_training = model.training
    model.eval()
    try:
        enc = model.encode(src, src_len, src_lang)
        if beam_size > 1:
            enc = enc.repeat_interleave(beam_size, dim=0)
            src_len = src_len.repeat_interleave(beam_size, dim=0)
        stepper = _Stepper(model.decoder, tgt_lang, use_cache, src_enc=enc, src_len=src_len)
        start = torch.full((enc.shape[0], 1), eos_index, dtype=torch.long, device=src.device)
        if beam_size > 1:
            return _beam(stepper, start, max_len - 1, beam_size, eos_index, pad_index, length_penalty, early_stopping)
        return _greedy(stepper, start, max_len - 1, eos_index, pad_index, length_penalty, sample, temperature,
                       top_k, top_p, generator)
    finally:
        model.train(was_training)


@torch.no_grad()
def generate(model: TransformerModel, prompts: list[list[int]], lang: int | None, *, max_new_tokens: int = 50,
             beam_size: int = 1, length_penalty: float = 1.0, early_stopping: bool = False, sample: bool = False,
             temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, use_cache: bool = True,
             eos_index: int = EOS_INDEX, pad_index: int | None = None,
             generator: torch.Generator | None = None) -> Hypotheses:
    """Continue each prompt (ids, normally starting with ``</s>`` as the CLM's training streams do)
    with a causal :class:`TransformerModel` in language id ``lang``.

    Prompts of different lengths are left-padded; each one's positions start at 0 and its padding
    is never attended, so a prompt's continuation does not depend on the others in the batch.
    At most ``max_new_tokens`` tokens follow a prompt, the last being ``</s>`` if none came before
    (``tokens`` hold the words before it). Raises :class:`XLMError` for an empty prompt or a
    continuation beyond ``model.max_positions``.
    """
    if not prompts or any(len(p) == 0 for p in prompts):
        raise XLMError("generate: every prompt needs at least one token (normally </s>)")
    _check(beam_size, max_new_tokens + 1, temperature, top_k, top_p, sample)
    pad_index = model.pad_index if pad_index is None else pad_index
    longest = max(len(p) for p in prompts)
    if longest + max_new_tokens > model.cfg.max_positions - model.cfg.position_offset:
        raise XLMError(f"generate: a prompt of {longest} tokens + max_new_tokens {max_new_tokens} exceeds "
                       f"model.max_positions ({model.cfg.max_positions})")
    dev = next(model.parameters()).device
    start = torch.full((len(prompts), longest), pad_index, dtype=torch.long, device=dev)
    for i, p in enumerate(prompts):
        start[i, longest - len(p):] = torch.tensor(p, dtype=torch.long)
    pad_left = torch.tensor([longest - len(p) for p in prompts], device=dev)
    if beam_size > 1:
        start, pad_left = start.repeat_interleave(beam_size, 0), pad_left.repeat_interleave(beam_size, 0)
    was_training = model.training
    model.eval()
    try:
        stepper = _Stepper(model, lang, use_cache, pad_left=pad_left if bool(pad_left.any()) else None)
        if beam_size > 1:
            return _beam(stepper, start, max_new_tokens, beam_size, eos_index, pad_index, length_penalty,
                         early_stopping)
        return _greedy(stepper, start, max_new_tokens, eos_index, pad_index, length_penalty, sample, temperature,
                       top_k, top_p, generator)
    finally:
        model.train(was_training)
