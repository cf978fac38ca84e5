"""Start a new run from existing weights: ``init.from`` (the original's ``--reload_model``) and ``init.emb``
(``--reload_emb``).

Unlike the original, which needed the very same vocabulary and architecture, rows are mapped by
meaning: the word-indexed tables (``embeddings.weight`` and the output layer ``pred_layer.proj``)
row by row by *word* (the special tokens by *role*: an XLM-R model's ``<mask>`` row becomes XLM's
``<special1>``, its ``<pad>`` id 1 becomes id 2), ``lang_embeddings.weight`` by *language code*.
Rows with no counterpart (new words, new languages) keep the values the new model was initialized
with, i.e. they are initialized as the model's own init does. Every other parameter is copied by
name. With ``strict`` every parameter of the new model must come from the source with its shape,
and the architecture must compute the same function (same activation, heads, norms, positions);
without it, whatever matches is loaded and the rest is reported: parameters new, dropped, or of
another shape (position tables of another length are copied on their common prefix).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from xlm.data.dictionary import Dictionary
from xlm.errors import XLMError
from xlm.model.decoder import EncoderDecoder, TransformerDecoder
from xlm.model.transformer import TransformerModel

BY_WORD = ("embeddings.weight", "pred_layer.proj.weight", "pred_layer.proj.bias")
BY_LANG = ("lang_embeddings.weight",)
SAME_FUNCTION = ("emb_dim", "n_layers", "n_heads", "gelu_activation", "sinusoidal_embeddings", "use_lang_emb",
                 "share_inout_emb", "pre_norm", "ffn_dim", "layer_norm_eps", "position_offset", "n_token_types",
                 "lm_head_transform")


@dataclass
class InitReport:
    """What :func:`init_from_model` did, for the run's log."""

    source: str
    words_found: int = 0
    words_total: int = 0
    langs_found: list[str] = field(default_factory=list)
    langs_new: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)  # parameters the source lacks (kept at their init)
    dropped: list[str] = field(default_factory=list)  # source parameters the new model lacks
    reshaped: list[str] = field(default_factory=list)  # same name, other shape
    differences: list[str] = field(default_factory=list)  # architecture settings that differ
    cross_attention_new: int = 0  # a decoder's cross-attention parameters, new by design (init.decoder)
    key: str = "init.from"  # the config key that asked for it (init.encoder / init.decoder for translation)

    def lines(self) -> list[str]:
        k = self.key
        out = [f"{k} {self.source}: {self.words_found:,} of {self.words_total:,} words found "
               f"({100 * self.words_found / max(self.words_total, 1):.1f}%; the others keep their initial rows)"]
        if self.langs_found or self.langs_new:
            out.append(f"{k}: languages {self.langs_found} loaded"
                       + (f", {self.langs_new} new (initial rows)" if self.langs_new else ""))
        for what, names in (("new (kept at init)", self.new), ("dropped", self.dropped),
                            ("of another shape", self.reshaped)):
            if names:
                out.append(f"{k}: {len(names)} parameter(s) {what}: {', '.join(names[:8])}"
                           + (" ..." if len(names) > 8 else ""))
        if self.differences:
            out.append(f"{k}: architecture differs: {', '.join(self.differences)}")
        if self.cross_attention_new:
            out.append(f"{k}: {self.cross_attention_new} cross-attention parameter(s) new (kept at init), "
                       "as in the paper")
        return out


def _row_map(new_keys: list[str], old_index: dict[str, int]) -> tuple[torch.Tensor, torch.Tensor]:
    pairs = [(i, old_index[k]) for i, k in enumerate(new_keys) if k in old_index]
    if not pairs:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    new, old = zip(*pairs)
    return torch.tensor(new), torch.tensor(old)


def _word_rows(new: Dictionary, old: Dictionary) -> tuple[torch.Tensor, torch.Tensor]:
    """Row pairs by word, the special tokens by role (the layouts of XLM and XLM-R differ)."""
    pairs = {i: old.word2id[w] for i, w in enumerate(new.id2word) if w in old.word2id}
    roles = old.specials()
    for role, i in new.specials().items():
        pairs[i] = roles[role]
    new_rows = sorted(pairs)
    return torch.tensor(new_rows, dtype=torch.long), torch.tensor([pairs[i] for i in new_rows], dtype=torch.long)


@torch.no_grad()
def init_from_model(model: TransformerModel, dictionary: Dictionary, lang2id: dict[str, int],
                    source: TransformerModel, source_dictionary: Dictionary, source_lang2id: dict[str, int],
                    strict: bool = True, name: str = "") -> InitReport:
    """Copy ``source``'s weights into ``model`` (in place), rows mapped by word and language.

    Raises :class:`XLMError` under ``strict`` when a parameter is missing, extra or of another shape,
    or when the architecture computes another function.
    """
    report = InitReport(name)
    ours, theirs = model.cfg, source.cfg
    report.differences = [f"{k}: {getattr(theirs, k)} -> {getattr(ours, k)}" for k in SAME_FUNCTION
                          if getattr(ours, k) != getattr(theirs, k)]
    if strict and report.differences:
        raise XLMError(f"init.from {name}: the architecture differs ({', '.join(report.differences)}); set "
                       "init.strict: false to load what matches")
    new_words, old_words = _word_rows(dictionary, source_dictionary)
    report.words_found, report.words_total = len(new_words), len(dictionary)
    by_id = {i: lang for lang, i in lang2id.items()}
    new_langs, old_langs = _row_map([by_id.get(i, "") for i in range(model.n_langs)], source_lang2id)
    report.langs_found = [by_id[int(i)] for i in new_langs]
    report.langs_new = sorted(set(lang2id) - set(report.langs_found)) if model.use_lang_emb else []

    target = dict(model.named_parameters())
    target.update(dict(model.named_buffers()))
    src = dict(source.named_parameters())
    src.update(dict(source.named_buffers()))
    tied = ours.share_inout_emb
    for key, param in target.items():
        if tied and key == "pred_layer.proj.weight":
            continue  # the same tensor as embeddings.weight
        if key in BY_WORD or key in BY_LANG:
            other = src.get(key)
            if other is None and key == "pred_layer.proj.weight":
                other = src.get("embeddings.weight")  # a tied source stores its output weight there
            if other is None or other.shape[1:] != param.shape[1:]:
                (report.new if other is None else report.reshaped).append(key)
                continue
            rows_new, rows_old = (new_words, old_words) if key in BY_WORD else (new_langs, old_langs)
            param[rows_new] = other[rows_old].to(param.dtype)
        elif key not in src:
            report.new.append(key)
        elif src[key].shape != param.shape:
            report.reshaped.append(key)
            if key == "position_embeddings.weight" and src[key].shape[1:] == param.shape[1:]:
                n = min(len(param), len(src[key]))
                param[:n] = src[key][:n]
        else:
            param.copy_(src[key])
    report.dropped = sorted(k for k in src if k not in target)
    if strict and (report.new or report.reshaped or report.dropped):
        first = (report.new or report.reshaped or report.dropped)[0]
        what = "new" if report.new else "of another shape" if report.reshaped else "not in the new model"
        raise XLMError(f"init.from {name}: parameter {first!r} is {what}; set init.strict: false to load what matches")
    return report


def init_from(model: TransformerModel, dictionary: Dictionary, lang2id: dict[str, int], path: str,
              strict: bool) -> InitReport:
    """:func:`init_from_model` with the model at ``path`` (any format :func:`xlm.load_pretrained` reads)."""
    from xlm.pretrained import load_pretrained

    if not Path(path).exists():
        raise XLMError(f"init.from: {path}: no such file or folder")
    src = load_pretrained(path)
    if src.dictionary is None:
        raise XLMError(f"init.from: {path}: the model carries no vocabulary (a model-only folder): its rows cannot be "
                       "mapped to the run's words")
    return init_from_model(model, dictionary, lang2id, src.model, src.dictionary, src.lang2id, strict, str(path))


# -- fastText vectors -----------------------------------------------------------------------------
def read_vectors(path: str | os.PathLike, words: dict[str, int], dim: int) -> dict[int, np.ndarray]:
    """Vectors of ``words`` (word -> id) found in a fastText ``.vec`` text file: ``{id: (dim,) float32}``.

    Streams the file (only the vectors of known words are kept). The first line is ``N DIM``; each
    other line ``WORD v1 ... vDIM`` (space-separated; as fastText writes them, with a trailing space
    tolerated). A word listed twice keeps its first vector, as the original's ``read_txt_embeddings``.
    Raises :class:`XLMError` naming the file and line for a wrong dimension or a malformed line.
    """
    found: dict[int, np.ndarray] = {}
    try:
        f = open(path, "rb")  # noqa: SIM115 (closed below)
    except OSError as e:
        raise XLMError(f"init.emb: {path}: {e.strerror}") from None
    with f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8").rstrip("\n").rstrip("\r").rstrip(" ")
            except UnicodeDecodeError as e:
                raise XLMError(f"{path}:{lineno}: invalid UTF-8 at byte {e.start}") from None
            parts = line.split(" ")
            if lineno == 1:
                if len(parts) != 2 or not all(p.isdigit() for p in parts):
                    raise XLMError(f"{path}:1: expected the fastText header 'N_WORDS DIM', got {line[:60]!r}")
                if int(parts[1]) != dim:
                    raise XLMError(f"{path}:1: vectors of dimension {parts[1]} but model.emb_dim is {dim}")
                continue
            if len(parts) != dim + 1:
                raise XLMError(f"{path}:{lineno}: expected a word and {dim} numbers, got {len(parts) - 1} numbers")
            i = words.get(parts[0])
            if i is None or i in found:
                continue
            try:
                vec = np.array(parts[1:], dtype=np.float32)
            except ValueError:
                raise XLMError(f"{path}:{lineno}: not a number in the vector of {parts[0]!r}") from None
            if not np.isfinite(vec).all():
                raise XLMError(f"{path}:{lineno}: non-finite value in the vector of {parts[0]!r}")
            found[i] = vec
    return found


@torch.no_grad()
def init_embeddings(model: TransformerModel, dictionary: Dictionary, path: str) -> str:
    """Load fastText vectors into the input embeddings (and an untied output layer, as the original's
    ``set_pretrain_emb``); returns the coverage line for the log."""
    found = read_vectors(path, dictionary.word2id, model.dim)
    if found:
        ids = torch.tensor(sorted(found))
        rows = torch.from_numpy(np.stack([found[int(i)] for i in ids]))
        model.embeddings.weight[ids] = rows.to(model.embeddings.weight.dtype)
        if not model.cfg.share_inout_emb:
            model.pred_layer.proj.weight[ids] = rows.to(model.pred_layer.proj.weight.dtype)
    pct = 100 * len(found) / len(dictionary)
    line = f"init.emb {path}: {len(found):,} of {len(dictionary):,} words found ({pct:.1f}%)"
    if not found:
        raise XLMError(f"init.emb: {path}: none of the {len(dictionary):,} words of the vocabulary is in the file "
                       "(another tokenization or BPE?)")
    return line



# -- encoder-decoder ------------------------------------------------------------------------------
CROSS_ATTENTION = ("encoder_attn.", "layer_norm15.")


@torch.no_grad()
def init_encoder_decoder(model: EncoderDecoder, dictionary: Dictionary, lang2id: dict[str, int],
                         encoder: str, decoder: str = "", strict: bool = True) -> list[InitReport]:
    """``init.encoder`` / ``init.decoder``: both sides of a translation model from pretrained models.

    As the paper (Lample & Conneau 2019, section 5.2) and the original's ``build_model`` (its
    ``reload_model: enc_path,dec_path``), the decoder takes every parameter of a pretrained
    encoder-only model but the cross-attention (``encoder_attn.i``, ``layer_norm15.i``), which keeps
    its initialization; ``decoder`` defaults to ``encoder``. A source that is itself an encoder-decoder
    gives each side its own side. Rows are mapped by word and language as :func:`init_from_model`.
    Under ``strict``, anything else missing, reshaped or dropped raises :class:`XLMError`.
    """
    from xlm.pretrained import load_pretrained

    reports = []
    loaded: dict[str, object] = {}
    for side, path in (("encoder", encoder), ("decoder", decoder or encoder)):
        if not path:
            continue
        if not Path(path).exists():
            raise XLMError(f"init.{side}: {path}: no such file or folder")
        src = loaded.get(path) or load_pretrained(path)
        loaded[path] = src
        source = getattr(src.model, side) if isinstance(src.model, EncoderDecoder) else src.model
        report = init_from_model(getattr(model, side), dictionary, lang2id, source, src.dictionary, src.lang2id,
                                 strict=False, name=f"{src.path or path}" + (f" (its {side})" if isinstance(
                                     src.model, EncoderDecoder) else ""))
        report.key = f"init.{side}"
        if side == "decoder" and not isinstance(source, TransformerDecoder):
            cross = [k for k in report.new if k.startswith(CROSS_ATTENTION)]
            report.new = [k for k in report.new if k not in cross]
            report.cross_attention_new = len(cross)
        if strict and (report.differences or report.new or report.reshaped or report.dropped):
            what = (report.differences or report.new or report.reshaped or report.dropped)[0]
            raise XLMError(f"init.{side} {path}: {what!r} differs, is missing or extra; set init.strict: false "
                           "to load what matches")
        reports.append(report)
    return reports
