"""The translation decoder: the encoder's layers plus cross-attention to the encoder, and a key/value cache.

Parameter names are the original's (facebookresearch/XLM ``src/model/transformer.py``,
``TransformerModel(is_encoder=False)``): each layer ``i`` adds ``encoder_attn.i`` (cross-attention,
after the self-attention) and ``layer_norm15.i`` (its post-norm), so an original MT checkpoint's
``decoder`` state dict loads as it is. :func:`run_layers` is the one forward of both the encoder
(``src_enc`` None) and the decoder, with or without a :class:`KVCache`; it serves training (whole
target, right padding) and generation (new tokens only, optionally left-padded prompts). Tensors are
batch-first: ``(batch, seq)`` in, ``(batch, seq, emb_dim)`` out.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xlm.config import ModelConfig
from xlm.model.transformer import MultiHeadAttention, TransformerModel


class KVCache:
    """Keys and values of the tokens already seen, per layer, so that a decoding step costs one token.

    ``self_kv[i]``: ``(batch, heads, past, head_dim)`` pairs of layer ``i``'s self-attention;
    ``cross_kv[i]``: the projected encoder states (computed at the first step, never changing).
    ``key_valid``: bool ``(batch, past)``, False at prompt padding (None: every key is real).
    """

    def __init__(self) -> None:
        self.self_kv: dict[int, tuple[Tensor, Tensor]] = {}
        self.cross_kv: dict[int, tuple[Tensor, Tensor]] = {}
        self.length = 0

    def reorder(self, index: Tensor, cross: bool = True) -> None:
        """Keep rows ``index`` ``(new_batch,)`` (beam search). ``cross=False`` leaves the encoder's keys
        as they are: right when rows only move among the beams of one input, which share a source."""
        self.self_kv = {i: (k.index_select(0, index), v.index_select(0, index)) for i, (k, v) in self.self_kv.items()}
        if cross:
            self.cross_kv = {i: (k.index_select(0, index), v.index_select(0, index))
                             for i, (k, v) in self.cross_kv.items()}


def _heads(mha: MultiHeadAttention, t: Tensor) -> Tensor:
    bs, n, dim = t.shape
    return t.view(bs, n, mha.n_heads, dim // mha.n_heads).transpose(1, 2)


def attention(mha: MultiHeadAttention, x: Tensor, mask: Tensor | None, *, kv: Tensor | None = None,
              cache: dict[int, tuple[Tensor, Tensor]] | None = None, layer: int = 0, causal: bool = False,
              cross: bool = False) -> Tensor:
    """Multi-head attention of ``x`` ``(batch, q, dim)`` with ``mha``'s weights (the encoder's class).

    Self-attention (``kv`` None) appends the new keys/values to ``cache[layer]``; cross-attention
    (``kv`` the encoder output ``(batch, src, dim)``) projects ``kv`` once and reuses it.
    ``mask``: bool, broadcastable to ``(batch, 1, q, keys)``, True where a key may be attended.
    """
    bs, qlen, dim = x.shape
    q = _heads(mha, mha.q_lin(x))
    if cross and cache is not None and layer in cache:
        k, v = cache[layer]
    else:
        src = x if kv is None else kv
        k, v = _heads(mha, mha.k_lin(src)), _heads(mha, mha.v_lin(src))
        if cache is not None:
            if not cross and layer in cache:
                k = torch.cat([cache[layer][0], k], dim=2)
                v = torch.cat([cache[layer][1], v], dim=2)
            cache[layer] = (k, v)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and mask is None,
                                         dropout_p=mha.dropout if mha.training else 0.0)
    return mha.out_lin(out.transpose(1, 2).reshape(bs, qlen, dim))


def run_layers(model: TransformerModel, x: Tensor, *, positions: Tensor | None = None,
               langs: Tensor | int | None = None, lengths: Tensor | None = None,
               src_enc: Tensor | None = None, src_len: Tensor | None = None,
               cache: KVCache | None = None, key_valid: Tensor | None = None) -> Tensor:
    """Causal forward of ``x`` ``(batch, q)``, the tokens after the ``cache.length`` already cached.

    ``positions`` default to ``past..past+q-1``; ``langs`` one id or ``(batch, q)``; ``lengths``
    ``(batch,)`` zeroes the outputs past each length (training with right padding, as the original:
    causality alone keeps padding from real positions). ``src_enc`` ``(batch, src, dim)`` with
    ``src_len`` ``(batch,)``: cross-attention (decoder only). ``key_valid`` bool ``(batch, past+q)``:
    keys that may be attended besides causality (False on left padding of prompts); a query may
    always attend to itself so that no row is empty. Returns ``(batch, q, emb_dim)``.
    """
    bs, qlen = x.shape
    past = cache.length if cache is not None else 0
    cfg = model.cfg
    offset = cfg.position_offset  # first position row (XLM-R: 2), as TransformerModel.forward
    if positions is None:
        n_pos = model.position_embeddings.num_embeddings
        if offset + past + qlen > n_pos:
            raise ValueError(f"position {past + qlen - 1} exceeds max_positions={n_pos}"
                             + (f" less position_offset={offset}" if offset else ""))
        h = model.embeddings(x) + model.position_embeddings.weight[offset + past:offset + past + qlen]
    else:
        h = model.embeddings(x) + model.position_embeddings(positions + offset if offset else positions)
    if cfg.n_token_types:
        h = h + model.token_type_embeddings.weight[0]
    if langs is not None and model.use_lang_emb:
        h = h + (model.lang_embeddings.weight[langs] if isinstance(langs, int) else model.lang_embeddings(langs))
    h = F.dropout(model.layer_norm_emb(h), cfg.dropout, model.training)
    pad_mask = None
    if lengths is not None:
        pad_mask = (torch.arange(past, past + qlen, device=x.device)[None] < lengths[:, None]).unsqueeze(-1)
        h = h * pad_mask.to(h.dtype)

    # self-attention mask: None is plain causality (fast path) or, for one new token, nothing at all
    mask = None
    causal = qlen > 1
    if key_valid is not None or (past > 0 and qlen > 1):
        keys = torch.arange(past + qlen, device=x.device)
        queries = torch.arange(past, past + qlen, device=x.device)
        mask = (keys[None, :] <= queries[:, None])[None, None]  # (1, 1, q, keys)
        if key_valid is not None:
            mask = mask & (key_valid[:, None, None, :] | (keys[None, :] == queries[:, None])[None, None])
        causal = False
    src_mask = None
    if src_enc is not None:
        if not hasattr(model, "encoder_attn"):
            raise ValueError("src_enc given to a model without cross-attention (not a TransformerDecoder)")
        src_mask = (torch.arange(src_enc.shape[1], device=x.device)[None] < src_len[:, None])[:, None, None, :]

    self_cache = cache.self_kv if cache is not None else None
    cross_cache = cache.cross_kv if cache is not None else None
    drop = lambda t: F.dropout(t, cfg.dropout, model.training)  # noqa: E731
    for i in range(model.n_layers):
        if cfg.pre_norm:
            h = h + drop(attention(model.attentions[i], model.layer_norm1[i](h), mask, cache=self_cache, layer=i,
                                   causal=causal))
            if src_enc is not None:
                h = h + drop(attention(model.encoder_attn[i], model.layer_norm15[i](h), src_mask, kv=src_enc,
                                       cache=cross_cache, layer=i, cross=True))
            h = h + model.ffns[i](model.layer_norm2[i](h))
        else:
            h = model.layer_norm1[i](h + drop(attention(model.attentions[i], h, mask, cache=self_cache, layer=i,
                                                        causal=causal)))
            if src_enc is not None:
                h = model.layer_norm15[i](h + drop(attention(model.encoder_attn[i], h, src_mask, kv=src_enc,
                                                             cache=cross_cache, layer=i, cross=True)))
            h = model.layer_norm2[i](h + model.ffns[i](h))
        if pad_mask is not None:
            h = h * pad_mask.to(h.dtype)
    if cfg.pre_norm:
        h = model.layer_norm_out(h)
    if cache is not None:
        cache.length += qlen
    return h


class TransformerDecoder(TransformerModel):
    """The encoder's stack plus, in each layer, cross-attention ``encoder_attn.i`` and its norm ``layer_norm15.i``.

    As the original decoder it is always causal; the language embedding is the target language's.
    Cross-attention starts from PyTorch's default ``nn.Linear`` init (as the original's ``Linear``).
    """

    def __init__(self, cfg: ModelConfig, n_words: int, n_langs: int):
        super().__init__(cfg, n_words, n_langs)
        pred = self._modules.pop("pred_layer")  # registered last, as in the original's state dicts
        eps = cfg.layer_norm_eps
        self.layer_norm15 = nn.ModuleList(nn.LayerNorm(self.dim, eps=eps) for _ in range(cfg.n_layers))
        self.encoder_attn = nn.ModuleList(
            MultiHeadAttention(cfg.n_heads, self.dim, cfg.attention_dropout) for _ in range(cfg.n_layers)
        )
        self._modules["pred_layer"] = pred

    def blocks(self) -> list[nn.Module]:
        """The per-layer modules FSDP2 shards one by one, cross-attention included."""
        return [*self.attentions, *self.encoder_attn, *self.ffns]

    def forward(self, x: Tensor, lengths: Tensor | None = None, langs: Tensor | int | None = None,  # type: ignore[override]
                positions: Tensor | None = None, *, src_enc: Tensor, src_len: Tensor,
                cache: KVCache | None = None) -> Tensor:
        """Decoder states ``(batch, tgt, emb_dim)`` of the target ``x`` ``(batch, tgt)`` given the encoder
        output ``src_enc`` ``(batch, src, emb_dim)`` with ``src_len`` ``(batch,)`` real source tokens."""
        if lengths is None and cache is None:
            lengths = (x != self.pad_index).sum(dim=1)
        return run_layers(self, x, positions=positions, langs=langs, lengths=lengths, src_enc=src_enc,
                          src_len=src_len, cache=cache)


class EncoderDecoder(nn.Module):
    """An XLM translation model: ``encoder`` (a :class:`TransformerModel`) and ``decoder``.

    ``cfg`` is the shared architecture (``encoder_only: false``); ``n_words`` the shared vocabulary.
    """

    def __init__(self, cfg: ModelConfig, n_words: int, n_langs: int):
        super().__init__()
        self.cfg = cfg
        self.n_words = n_words
        self.n_langs = n_langs
        self.pad_index = cfg.pad_index
        self.encoder = TransformerModel(cfg, n_words, n_langs)
        self.decoder = TransformerDecoder(cfg, n_words, n_langs)

    def encode(self, x: Tensor, lengths: Tensor, lang: Tensor | int) -> Tensor:
        """Source ``(batch, src)`` -> ``(batch, src, emb_dim)`` (bidirectional, as the original encoder)."""
        return self.encoder(x, lengths=lengths, langs=lang, causal=False)

    def forward(self, x: Tensor, lengths: Tensor | None = None, langs: Tensor | int | None = None,
                positions: Tensor | None = None, causal: bool = False, attn_mask: Tensor | None = None,
                padded: bool | None = None, *, source: Any = None) -> Tensor:
        """The model call of the training objectives (:class:`xlm.objectives.Batch` inputs).

        Without ``source``: the encoder's forward (MLM/CLM on the encoder, as the original's
        ``encoder('fwd', ...)``). With ``source`` (``.x`` ``(batch, src)``, ``.lengths``, ``.langs``,
        ``.padded``): the decoder states ``(batch, tgt, emb_dim)`` of the target ``x``, teacher-forced
        (always causal; ``attn_mask`` is not supported there). Scores: ``predict(h, decoder=True)``.
        """
        if source is None:
            return self.encoder(x, lengths=lengths, langs=langs, positions=positions, causal=causal,
                                attn_mask=attn_mask, padded=padded)
        if attn_mask is not None:
            raise ValueError("attn_mask: not supported on the decoder side (it is causal)")
        enc = self.encoder(source.x, lengths=source.lengths, langs=source.langs, causal=False, padded=source.padded)
        return self.decoder(x, lengths=lengths, langs=langs, positions=positions, src_enc=enc,
                            src_len=source.lengths)

    def teacher_forced(self, src: Tensor, src_len: Tensor, src_lang: Tensor | int, tgt: Tensor, tgt_len: Tensor,
                       tgt_lang: Tensor | int) -> Tensor:
        """Teacher-forced decoder states ``(batch, tgt, emb_dim)``; scores come from ``decoder.predict``."""
        enc = self.encode(src, src_len, src_lang)
        return self.decoder(tgt, lengths=tgt_len, langs=tgt_lang, src_enc=enc, src_len=src_len)

    def predict(self, h: Tensor, decoder: bool = False) -> Tensor:
        """Scores ``(n, n_words)`` of states ``h`` ``(n, emb_dim)``: the decoder's output layer for decoder
        states, else the encoder's (each side has its own, tied to its own embeddings as the original)."""
        return (self.decoder if decoder else self.encoder).predict(h)

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    @property
    def dim(self) -> int:
        return self.encoder.dim

    @property
    def n_layers(self) -> int:
        """Layers of each side (encoder and decoder have the same depth here, as the original's default)."""
        return self.encoder.n_layers

    def blocks(self) -> list[nn.Module]:
        """The per-layer modules FSDP2 shards one by one: both sides' (cross-attention included)."""
        return [*self.encoder.blocks(), *self.decoder.blocks()]

    def flops_per_token(self, seq_len: int, n_predicted_fraction: float = 1.0) -> float:
        """Approximate training FLOPs per target token for MFU logging: both stacks (as if the source were as
        long as the target) plus the decoder's cross-attention projections."""
        d, L = self.dim, self.n_layers
        cross = 3.0 * L * (2 * 4 * d * d + 2 * 2 * seq_len * d)
        return self.encoder.flops_per_token(seq_len, 0.0) + self.decoder.flops_per_token(
            seq_len, n_predicted_fraction) + cross
