"""The XLM encoder: token + position + language embeddings and a stack of transformer layers.

Parameter names follow the original (``embeddings``, ``position_embeddings``, ``lang_embeddings``,
``layer_norm_emb``, ``attentions.i.q_lin``, ``layer_norm1.i``, ``ffns.i.lin1``, ``layer_norm2.i``,
``pred_layer.proj``) so that interop with original and Hugging Face checkpoints is a key map.
Tensors are batch-first: ``(batch, seq)`` in, ``(batch, seq, emb_dim)`` out. This module holds no
training, I/O or config parsing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from xlm.config import ModelConfig
from xlm.model.attention_mask import AttentionMask, BlockMask, flex_attention, use_flex

LAYER_NORM_EPS = 1e-12


def sinusoidal_table(n_pos: int, dim: int) -> Tensor:
    """Angle ``pos / 10000^(2*floor(j/2)/dim)``: sin on even ``j``, cos on odd ``j`` (as the original)."""
    pos = torch.arange(n_pos, dtype=torch.float64).unsqueeze(1)
    j = torch.arange(dim, dtype=torch.float64)
    angle = pos / torch.pow(10000.0, 2 * torch.div(j, 2, rounding_mode="floor") / dim)
    table = torch.empty(n_pos, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angle[:, 0::2])
    table[:, 1::2] = torch.cos(angle[:, 1::2])
    return table.float()


class MultiHeadAttention(nn.Module):
    def __init__(self, n_heads: int, dim: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.dropout = dropout
        self.q_lin = nn.Linear(dim, dim)
        self.k_lin = nn.Linear(dim, dim)
        self.v_lin = nn.Linear(dim, dim)
        self.out_lin = nn.Linear(dim, dim)

    def forward(self, x: Tensor, key_mask: Tensor | BlockMask | None, causal: bool) -> Tensor:
        """``key_mask``: bool ``(batch, 1, 1|seq, seq)``, True where a key may be attended (None: all), or a
        flex_attention ``BlockMask`` (:mod:`xlm.model.attention_mask`; no attention dropout there)."""
        bs, slen, dim = x.shape
        heads = lambda t: t.view(bs, slen, self.n_heads, dim // self.n_heads).transpose(1, 2)
        q, k, v = heads(self.q_lin(x)), heads(self.k_lin(x)), heads(self.v_lin(x))
        if BlockMask is not None and isinstance(key_mask, BlockMask):
            if x.device.type == "cpu":  # torch 2.13's CPU lowering of flex_attention rejects strided views
                q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
            out = flex_attention(q, k, v, block_mask=key_mask)
            return self.out_lin(out.transpose(1, 2).reshape(bs, slen, dim))
        # As the original, causal attention uses the triangle alone: padding sits at the end and
        # its outputs are zeroed, so it can never influence a real position.
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=None if causal else key_mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=causal,
        )
        return self.out_lin(out.transpose(1, 2).reshape(bs, slen, dim))


def full_attention_mask(attn_mask: Tensor, key_mask: Tensor | None, pad_mask: Tensor | None, causal: bool) -> Tensor:
    """Combine a per-example mask ``(batch, q, k)`` with padding and causality -> ``(batch, 1, q, k)``.

    Padded query rows may attend everywhere: their outputs are zeroed afterwards, and a fully masked
    row would give NaN in SDPA, which would then leak through the zeroed values into real rows.
    """
    if attn_mask.dim() != 3 or attn_mask.dtype != torch.bool:
        raise ValueError(f"attn_mask must be bool (batch, seq, seq), got {attn_mask.dtype} {tuple(attn_mask.shape)}")
    mask = attn_mask[:, None]
    if key_mask is not None:
        mask = mask & key_mask
    if causal:
        slen = attn_mask.shape[-1]
        mask = mask & torch.ones(slen, slen, dtype=torch.bool, device=mask.device).tril()
    if pad_mask is not None:
        mask = mask | ~pad_mask[:, None, :, None]
    return mask


class TransformerFFN(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float, gelu: bool):
        super().__init__()
        self.lin1 = nn.Linear(dim, hidden)
        self.lin2 = nn.Linear(hidden, dim)
        self.dropout = dropout
        self.act = F.gelu if gelu else F.relu

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(self.lin2(self.act(self.lin1(x))), self.dropout, self.training)


class PredLayer(nn.Module):
    """Output projection to the vocabulary (weight tied to the input embeddings by default).

    ``transform=True`` first applies XLM-R's ``lm_head`` transform, dense -> gelu -> LayerNorm
    (``XLMRobertaLMHead`` in transformers, RoBERTa's ``RobertaLMHead`` in fairseq).
    """

    def __init__(self, dim: int, n_words: int, transform: bool = False, eps: float = LAYER_NORM_EPS):
        super().__init__()
        if transform:
            self.dense = nn.Linear(dim, dim)
            self.layer_norm = nn.LayerNorm(dim, eps=eps)
        self.transform = transform
        self.proj = nn.Linear(dim, n_words, bias=True)

    def forward(self, h: Tensor) -> Tensor:
        if self.transform:
            h = self.layer_norm(F.gelu(self.dense(h)))
        return self.proj(h)


def encoder_layer(attention: MultiHeadAttention, layer_norm1: nn.LayerNorm, ffn: TransformerFFN,
                  layer_norm2: nn.LayerNorm, h: Tensor, key_mask: Tensor | BlockMask | None, causal: bool,
                  pad_mask: Tensor | None, pre_norm: bool, dropout: float, training: bool) -> Tensor:
    """One transformer layer (post-norm as the original, or pre-norm) of ``h`` ``(batch, seq, dim)``;
    padded positions zeroed. A function of the layer's modules rather than a method, so that one
    compiled version serves every layer (``TransformerModel.layer_fn``)."""
    if pre_norm:
        h = h + F.dropout(attention(layer_norm1(h), key_mask, causal), dropout, training)
        h = h + ffn(layer_norm2(h))
    else:
        h = layer_norm1(h + F.dropout(attention(h, key_mask, causal), dropout, training))
        h = layer_norm2(h + ffn(h))
    if pad_mask is not None:
        h = h * pad_mask.unsqueeze(-1).to(h.dtype)
    return h


class TransformerModel(nn.Module):
    """Transformer encoder with language embeddings; ``causal`` is chosen per call (MLM/TLM vs CLM)."""

    # How an AttentionMask is applied (xlm.model.attention_mask.use_flex): "auto" (flex_attention on CUDA
    # under torch.compile without attention dropout, SDPA with a dense mask otherwise), "sdpa" or "flex".
    attention_backend = "auto"
    # Runs each layer (encoder_layer's signature). Regional compilation (xlm.train.compile) sets a compiled
    # version on the instance and compiled_layers, which lets "auto" pick flex_attention as under a
    # whole-model torch.compile.
    layer_fn = staticmethod(encoder_layer)
    compiled_layers = False

    def __init__(self, cfg: ModelConfig, n_words: int, n_langs: int):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.n_words = n_words
        self.n_langs = n_langs
        self.pad_index = pad_index = cfg.pad_index
        if pad_index >= n_words:
            raise ValueError(f"model.pad_index={pad_index} is not an id of the {n_words}-word vocabulary")
        eps = cfg.layer_norm_eps
        dim = self.dim = cfg.emb_dim
        self.n_heads = cfg.n_heads
        self.n_layers = cfg.n_layers

        # Registration order matches the original so that state dicts list keys the same way.
        self.position_embeddings = nn.Embedding(cfg.max_positions, dim)
        if cfg.sinusoidal_embeddings:
            with torch.no_grad():
                self.position_embeddings.weight.copy_(sinusoidal_table(cfg.max_positions, dim))
            self.position_embeddings.weight.requires_grad = False
        self.use_lang_emb = n_langs > 1 and cfg.use_lang_emb
        if self.use_lang_emb:
            self.lang_embeddings = nn.Embedding(n_langs, dim)
        self.embeddings = nn.Embedding(n_words, dim, padding_idx=pad_index)
        if cfg.n_token_types:
            self.token_type_embeddings = nn.Embedding(cfg.n_token_types, dim)
        self.layer_norm_emb = nn.LayerNorm(dim, eps=eps)
        self.attentions = nn.ModuleList(
            MultiHeadAttention(cfg.n_heads, dim, cfg.attention_dropout) for _ in range(cfg.n_layers)
        )
        self.layer_norm1 = nn.ModuleList(nn.LayerNorm(dim, eps=eps) for _ in range(cfg.n_layers))
        self.ffns = nn.ModuleList(
            TransformerFFN(dim, cfg.ffn_dim or 4 * dim, cfg.dropout, cfg.gelu_activation) for _ in range(cfg.n_layers)
        )
        self.layer_norm2 = nn.ModuleList(nn.LayerNorm(dim, eps=eps) for _ in range(cfg.n_layers))
        if cfg.pre_norm:
            self.layer_norm_out = nn.LayerNorm(dim, eps=eps)
        self.pred_layer = PredLayer(dim, n_words, cfg.lm_head_transform, eps)
        self.reset_parameters()
        if cfg.share_inout_emb:
            self.pred_layer.proj.weight = self.embeddings.weight

    def reset_parameters(self) -> None:
        """Embeddings ~ N(0, dim^-0.5) with a zero padding row; linear layers keep PyTorch's init."""
        std = self.dim**-0.5
        embs = [self.embeddings] + ([self.lang_embeddings] if self.use_lang_emb else [])
        if self.cfg.n_token_types:
            embs.append(self.token_type_embeddings)
        if not self.cfg.sinusoidal_embeddings:
            embs.append(self.position_embeddings)
        with torch.no_grad():
            for emb in embs:
                nn.init.normal_(emb.weight, mean=0.0, std=std)
            self.embeddings.weight[self.pad_index].zero_()

    def forward(
        self,
        x: Tensor,
        lengths: Tensor | None = None,
        langs: Tensor | int | None = None,
        positions: Tensor | None = None,
        causal: bool = False,
        return_all: bool = False,
        attn_mask: Tensor | AttentionMask | None = None,
        padded: bool | None = None,
    ) -> Tensor | list[Tensor]:
        """Encode ``x`` ``(batch, seq)`` to hidden states ``(batch, seq, emb_dim)``.

        ``lengths`` defaults to the number of non-padding tokens (right padding assumed).
        ``langs`` is a ``(batch, seq)`` tensor or one id for every token; without it no language
        vector is added at all (as in the original). ``positions`` default to ``0..seq-1``, read
        from row ``model.position_offset`` on (XLM-R: 2). A model with token types adds type 0's
        vector to every token (as XLM-R does without ``token_type_ids``).
        ``return_all=True`` returns ``n_layers + 1`` tensors (for probing): the embedding output, then
        each layer's output, the last being the usual output (the order of Hugging Face's
        ``output_hidden_states``; a pre-norm model's last entry has its final LayerNorm applied).
        ``attn_mask``: bool ``(batch, seq, seq)``, True where query ``i`` may attend to key ``j``;
        it is combined (AND) with the padding and, when ``causal``, the causal masks. Objectives
        with their own attention pattern (CAMLM, packed rows) pass it; every real query must be
        allowed at least one key. An :class:`~xlm.model.attention_mask.AttentionMask` (segments, sides
        or dense rules) gives the same values, through SDPA with its dense mask or through flex_attention
        (:attr:`attention_backend`).
        ``padded``: whether some row is shorter than ``seq``, when the caller knows it (training knows
        it from the host-side batch); None finds out on the device, which costs a host synchronization
        (and a graph break under ``torch.compile``). Results are the same either way.
        """
        bs, slen = x.shape
        offset = self.cfg.position_offset
        if slen + offset > self.position_embeddings.num_embeddings and positions is None:
            raise ValueError(
                f"sequence of {slen} tokens exceeds max_positions={self.position_embeddings.num_embeddings}"
                + (f" less position_offset={offset}" if offset else "")
            )
        if lengths is None:
            lengths = (x != self.pad_index).sum(dim=1)
        pad_mask = None  # (batch, seq) True on real tokens; None when nothing is padded (fast path)
        if padded is None:
            padded = int(lengths.min()) < slen
        if padded:
            pad_mask = torch.arange(slen, device=x.device).unsqueeze(0) < lengths.unsqueeze(1)
        if positions is None:
            h = self.embeddings(x) + self.position_embeddings.weight[offset : offset + slen]
        else:
            h = self.embeddings(x) + self.position_embeddings(positions + offset if offset else positions)
        if self.cfg.n_token_types:
            h = h + self.token_type_embeddings.weight[0]
        if langs is not None and self.use_lang_emb:
            if isinstance(langs, int):
                h = h + self.lang_embeddings.weight[langs]
            else:
                h = h + self.lang_embeddings(langs)
        h = F.dropout(self.layer_norm_emb(h), self.cfg.dropout, self.training)
        key_mask = None
        if pad_mask is not None:
            h = h * pad_mask.unsqueeze(-1).to(h.dtype)
            key_mask = pad_mask[:, None, None, :]
        if isinstance(attn_mask, AttentionMask):
            compiled = self.compiled_layers and torch.is_grad_enabled()  # (regional compilation: training only)
            if use_flex(self.attention_backend, x, self.training, self.cfg.attention_dropout, compiled):
                key_mask = attn_mask.block_mask(lengths if pad_mask is not None else None, causal)
                attn_mask, causal = None, False  # folded into the block mask
            else:
                attn_mask = attn_mask.to_dense()
        if attn_mask is not None:
            key_mask = full_attention_mask(attn_mask, key_mask, pad_mask, causal)
            causal = False  # folded into the mask
        states = [h] if return_all else None

        recompute = self.cfg.checkpoint_activations and self.training and torch.is_grad_enabled()
        for i in range(self.n_layers):
            if recompute:  # activation checkpointing: the layer is run again in backward (same dropout masks)
                h = checkpoint(self._layer, i, h, key_mask, causal, pad_mask, use_reentrant=False)
            else:
                h = self._layer(i, h, key_mask, causal, pad_mask)
            if states is not None:
                states.append(h)
        if self.cfg.pre_norm:
            h = self.layer_norm_out(h)
            if pad_mask is not None:
                h = h * pad_mask.unsqueeze(-1).to(h.dtype)
        if states is not None:
            states[-1] = h
            return states
        return h

    def _layer(self, i: int, h: Tensor, key_mask: Tensor | BlockMask | None, causal: bool,
               pad_mask: Tensor | None) -> Tensor:
        return self.layer_fn(self.attentions[i], self.layer_norm1[i], self.ffns[i], self.layer_norm2[i], h, key_mask,
                             causal, pad_mask, self.cfg.pre_norm, self.cfg.dropout, self.training)

    def predict(self, h: Tensor) -> Tensor:
        """Vocabulary scores for the hidden states passed in, ``(..., emb_dim) -> (..., n_words)``.

        Pass only the positions to score (e.g. ``h[pred_mask]``): training never pays for
        full-vocabulary logits at unmasked tokens.
        """
        return self.pred_layer(h)

    def blocks(self) -> list[nn.Module]:
        """The per-layer modules FSDP2 shards one by one."""
        return [*self.attentions, *self.ffns]

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Unique parameters (a tied output projection counts once)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def flops_per_token(self, seq_len: int, n_predicted_fraction: float = 1.0) -> float:
        """Approximate training FLOPs per token (forward + backward = 3x forward) for MFU logging."""
        d, L = self.dim, self.n_layers
        per_layer = 2 * (4 * d * d + 2 * 4 * d * d) + 2 * 2 * seq_len * d
        head = 2 * d * self.n_words * n_predicted_fraction
        return 3.0 * (L * per_layer + head)
