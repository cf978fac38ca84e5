"""Raw sentences -> model inputs, prepared exactly as the model's training text was.

The text settings a model records (``Pretrained.text_settings``, the data folder's
``preprocess.json``: see :mod:`xlm.data.provenance`) rebuild its tokenizer; its BPE codes split the
tokens into pieces; its dictionary maps the pieces to ids. Each sentence is framed as the original
frames a sentence, ``</s> w1 ... wn </s>`` (``batch_sentences`` in the original's
``xlm/data/dataset.py``), and a batch is right-padded with ``<pad>`` (id 2). A model with XLM-R's
vocabulary layout frames ``<s> w1 ... wn </s>`` and pads with id 1 (the dictionary's ids), and a
model that carries a SentencePiece model (``Pretrained.spm_model``) segments with it.

Nothing is guessed silently: a model without a vocabulary, or with BPE pieces but no codes, refuses
raw text (naming the option that supplies them); a model that does not record how its text was
tokenized warns; more than 1% ``<unk>`` pieces warns; sentences longer than the model's positions
are cut with a warning that counts them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor

from xlm.data.dictionary import PAD_INDEX
from xlm.data.text.tables import MOSES_COMMIT
from xlm.errors import XLMError, warn

if TYPE_CHECKING:
    from xlm.pretrained import Pretrained

# What ``preprocess.py run`` does by default (xlm.data.pipeline.PipelineConfig): the exact Moses perl rules
# (``tokenizer`` names them, see xlm.data.tokenize), which also prepared the released XLM models' text.
# Without ``tokenizer``, ``Tokenizer.from_settings`` would rebuild the older sacremoses-based tokenizer.
DEFAULT_SETTINGS = {"tokenize": True, "tokenizer": f"moses-{MOSES_COMMIT}", "lower_remove_accent": False,
                    "pre_segmented": [], "segmentation": "bpe"}
UNK_WARNING_RATE = 0.01


class Inputs(NamedTuple):
    """A batch ready for ``p.model(ids, lengths=lengths, langs=langs, causal=p.causal)``."""

    ids: Tensor      # (batch, seq) int64 word ids, right-padded with <pad> (2)
    lengths: Tensor  # (batch,) int64 number of real positions, framing included
    langs: Tensor    # (batch, seq) int64 language id of every position


def make_tokenizer(lang: str, settings: dict) -> Callable[[str], str]:
    """The tokenizer that prepared ``lang`` text under ``settings``: the one place it is built.

    Known settings rebuild it exactly (:meth:`xlm.data.tokenize.Tokenizer.from_settings`, which also
    refuses a recorded segmenter that is not installed); unknown ones (a model whose checkpoint does
    not say, warned about where it is loaded) get the default Moses tokenizer.
    """
    from xlm.data.provenance import known
    from xlm.data.tokenize import Tokenizer

    tokenizer = Tokenizer.from_settings(lang, settings) if known(settings) else Tokenizer(lang)
    if tokenizer is None:  # the training text went to BPE as it was: words between spaces
        return lambda line: " ".join(w for w in line.split(" ") if w)
    return tokenizer


def codes_from_text(text: str) -> list[tuple[str, str, int]]:
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split(" ")
        if len(parts) != 3 or not parts[2].isdigit():
            raise XLMError(f"bpe codes (in checkpoint), line {lineno}: expected 'LEFT RIGHT COUNT'")
        out.append((parts[0], parts[1], int(parts[2])))
    return out


class TextPipeline:
    """Raw sentence -> BPE pieces, as the model's training data was prepared."""

    def __init__(self, settings: dict, bpe_codes: str | None, spm_model: bytes | None = None):
        from xlm.data.bpe import BPE

        self.settings = settings
        self.bpe = BPE(codes_from_text(bpe_codes)) if bpe_codes else None
        self.spm = None
        if spm_model is not None:
            from xlm.data.sentencepiece import require_sentencepiece

            self.spm = require_sentencepiece().SentencePieceProcessor(model_proto=spm_model)
        self._tokenizers: dict[str, Callable[[str], str]] = {}

    def __call__(self, sentence: str, lang: str, tokenized: bool = False) -> list[str]:
        """``tokenized=True``: the sentence is already tokenized (BPE is still applied; with a SentencePiece
        model, it is already segmented into space-separated pieces)."""
        if self.spm is not None:
            if tokenized:
                return sentence.split()
            if self.settings.get("tokenize", True):
                sentence = self._tokenizer(lang)(sentence)
            return self.spm.encode(sentence, out_type=str)
        if not tokenized:
            sentence = self._tokenizer(lang)(sentence)
        if self.bpe is not None:
            sentence = self.bpe.apply([sentence])[0]
        return sentence.split()

    def _tokenizer(self, lang: str) -> Callable[[str], str]:
        tok = self._tokenizers.get(lang)
        if tok is None:
            tok = self._tokenizers[lang] = make_tokenizer(lang, self.settings)
        return tok


def pipeline(p: Pretrained, tokenized: bool = False) -> TextPipeline:
    """The model's text pipeline (cached on ``p``), or an error saying what the model lacks."""
    where = f"{p.path or 'this model'} ({p.source or 'in memory'})"
    if p.dictionary is None:
        raise XLMError(f"{where}: no vocabulary (a model-only Hugging Face folder?): pass vocab=PATH to "
                       "load_pretrained (a TOKEN COUNT file or a Hugging Face vocab.json), or feed ids to p.model")
    settings = p.text_settings
    spm = getattr(p, "spm_model", None)
    if settings is not None and settings.get("segmentation") == "sentencepiece" and not tokenized and spm is None:
        raise XLMError(f"{where}: its text was segmented with SentencePiece, whose model checkpoints do not carry: "
                       "segment the text with 'preprocess.py spm-encode' and pass tokenized=True")
    if p.bpe_codes is None and any(w.endswith("@@") for w in p.dictionary.id2word):
        raise XLMError(f"{where}: the vocabulary holds BPE pieces but the model carries no BPE codes: pass "
                       "codes=PATH to load_pretrained (--codes on the command line, model.codes when fine-tuning)")
    if settings is None:
        settings = DEFAULT_SETTINGS
        if not tokenized and not getattr(p, "_warned_settings", False):
            warn(f"{where} does not record how its training text was tokenized: assuming Moses tokenization "
                 "without lowercasing; pass lowercase=True or False to load_pretrained (--lowercase / "
                 "--no-lowercase, model.lowercase) to say how", stacklevel=3)
            object.__setattr__(p, "_warned_settings", True)
    key = (json.dumps(settings, sort_keys=True), p.bpe_codes, spm)
    cached = getattr(p, "_pipeline", None)
    if cached is None or cached[0] != key:
        cached = (key, TextPipeline(dict(settings), p.bpe_codes, spm))
        object.__setattr__(p, "_pipeline", cached)
    return cached[1]


def check_lang(p: Pretrained, lang: str) -> int:
    """The language id of ``lang``; one-language models take any code."""
    if lang not in p.lang2id and len(p.lang2id) > 1:
        raise XLMError(f"lang: {lang!r} is not a language of this model ({', '.join(sorted(p.lang2id))})")
    return p.lang2id.get(lang, 0)


def prepare(p: Pretrained, sentences: Sequence[str], lang: str,
            tokenized: bool = False) -> tuple[list[list[str]], list[list[int]]]:
    """Each sentence's BPE pieces and its framed ids ``[</s>, w1..wn, </s>]`` (XLM-R: ``[<s>, .., </s>]``),
    cut to the model's positions."""
    if isinstance(sentences, str):
        raise XLMError("sentences: expected a list of sentences, got one string")
    check_lang(p, lang)
    pipe = pipeline(p, tokenized)
    max_pieces = p.model.cfg.max_positions - p.model.cfg.position_offset - 2
    pieces = [pipe(s, lang, tokenized) for s in sentences]
    cut = sum(len(x) > max_pieces for x in pieces)
    if cut:
        warn(f"cut {cut} of {len(pieces)} sentences to {max_pieces} pieces: the model has {max_pieces + 2} "
             "positions, two of them for the </s> framing", stacklevel=3)
        pieces = [x[:max_pieces] for x in pieces]
    d = p.dictionary
    ids = [d.encode(x) for x in pieces]  # type: ignore[union-attr]
    total = sum(len(x) for x in ids)
    unk = sum(x.count(d.unk_index) for x in ids)  # type: ignore[union-attr]
    if total and unk / total > UNK_WARNING_RATE:
        warn(f"{unk} of {total} pieces ({100 * unk / total:.1f}%) are <unk>: the text may not be prepared as the "
             "model's training text was (BPE codes, lowercasing, language)", stacklevel=3)
    start, end = d.start_index, d.eos_index  # type: ignore[union-attr]
    return pieces, [[start, *x, end] for x in ids]


def pad(framed: Sequence[Sequence[int]], lang_id: int, device: torch.device | str = "cpu",
        pad_index: int = PAD_INDEX) -> Inputs:
    """Right-pad framed sentences into one batch (batch-first) with ``pad_index`` (the model's ``<pad>``)."""
    lengths = torch.tensor([len(x) for x in framed], dtype=torch.long)
    ids = torch.full((len(framed), int(lengths.max()) if len(framed) else 0), pad_index, dtype=torch.long)
    for row, x in enumerate(framed):
        ids[row, : len(x)] = torch.tensor(x, dtype=torch.long)
    langs = torch.full_like(ids, lang_id)
    return Inputs(ids.to(device), lengths.to(device), langs.to(device))


def tokenize(p: Pretrained, sentences: Sequence[str], lang: str, tokenized: bool = False) -> Inputs:
    """Raw sentences of language ``lang`` -> one padded batch on the model's device."""
    _, framed = prepare(p, sentences, lang, tokenized)
    return pad(framed, check_lang(p, lang), next(p.model.parameters()).device, p.model.pad_index)
