"""A pretrained encoder with a task head, and the original's choice of which layers to fine-tune.

Heads (each a dropout then one linear layer, the shapes Hugging Face's XLM heads have, so that
:mod:`xlm.tasks.hf_export` is a key map):

- ``sequence``: the state of the first token (the first ``</s>``, the original's sentence
  embedding) -> ``(batch, n_out)`` (n_out = 1 for regression);
- ``token``: every state -> ``(batch, seq, n_labels)``;
- ``span``: every state -> ``(batch, seq, 2)``, start and end scores.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from xlm.tasks.config import parse_layer_range

HeadKind = Literal["sequence", "token", "span"]


class TaskModel(nn.Module):
    def __init__(self, encoder: nn.Module, kind: HeadKind, n_out: int, dropout: float):
        super().__init__()
        if kind not in ("sequence", "token", "span"):
            raise ValueError(f"unknown head kind {kind!r}")
        self.encoder = encoder
        self.kind = kind
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(encoder.dim, n_out)

    def forward(self, x: Tensor, lengths: Tensor, langs: Tensor | None, positions: Tensor) -> Tensor:
        """``x`` ``(batch, seq)`` -> logits ``(batch, n_out)`` (sequence) or ``(batch, seq, n_out)``."""
        h = self.encoder(x, lengths=lengths, langs=langs if self.encoder.use_lang_emb else None, positions=positions)
        if self.kind == "sequence":
            h = h[:, 0]
        return self.proj(self.dropout(h))


def finetuned_parameters(encoder: nn.Module, spec: str) -> list[nn.Parameter]:
    """The encoder parameters ``--finetune_layers spec`` trains (the original's ``SentenceEmbedder.get_parameters``).

    Layer 0 is the embeddings (tokens, positions unless sinusoidal, languages) and their LayerNorm;
    ``k`` is the k-th transformer layer. The output projection (``pred_layer``) is never trained
    on its own; with tied weights it shares the token embeddings, which layer 0 decides for.
    """
    i, j = parse_layer_range(spec, encoder.n_layers)
    params: list[nn.Parameter] = []
    if i > j:
        return params
    if i == 0:
        params += list(encoder.embeddings.parameters())
        if not encoder.cfg.sinusoidal_embeddings:
            params += list(encoder.position_embeddings.parameters())
        if encoder.use_lang_emb:
            params += list(encoder.lang_embeddings.parameters())
        params += list(encoder.layer_norm_emb.parameters())
    for k in range(max(i - 1, 0), j):
        for block in (encoder.attentions, encoder.layer_norm1, encoder.ffns, encoder.layer_norm2):
            params += list(block[k].parameters())
    if j == encoder.n_layers and encoder.cfg.pre_norm:
        params += list(encoder.layer_norm_out.parameters())
    return params


def freeze_all_but(encoder: nn.Module, keep: list[nn.Parameter]) -> int:
    """Make only ``keep`` trainable; returns the number of trainable encoder values."""
    ids = {id(p) for p in keep}
    for p in encoder.parameters():
        p.requires_grad_(id(p) in ids)
    return sum(p.numel() for p in encoder.parameters() if p.requires_grad)
