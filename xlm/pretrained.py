"""Load and save pretrained models in any of three formats, auto-detected on load.

- ``xlm``: our checkpoint file (``{"format": "xlm", ...}``), or a run folder (its best checkpoint,
  else its latest);
- ``original``: a ``.pth`` from facebookresearch/XLM (``model`` or ``encoder``, ``params``, ``dico_*``);
- ``hf``: a Hugging Face folder (``config.json``, ``model.safetensors`` or ``pytorch_model.bin``, and
  when present ``vocab.json``, ``merges.txt``, ``tokenizer_config.json``): :mod:`xlm.hf_folder`.

What a file does not carry (an original ``.pth`` has no BPE codes and does not say whether its text
was lowercased; a model-only HF folder has no vocabulary) is given to :func:`load_pretrained`;
:mod:`xlm.text` refuses raw text rather than guess what is missing.

Every file is opened with :func:`xlm.serialization.safe_load`: loading never runs pickled code.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from xlm.config import ModelConfig
from xlm.data.dictionary import N_SPECIAL, Dictionary
from xlm.errors import XLMError, warn
from xlm.model import interop
from xlm.model.decoder import EncoderDecoder
from xlm.model.transformer import TransformerModel
from xlm.serialization import atomic_save, safe_load

if TYPE_CHECKING:
    from xlm.text import Inputs

Format = Literal["xlm", "original", "hf"]
FORMAT_VERSION = 1


class Pretrained:
    """A model with everything needed to feed it raw text: vocabulary, language ids, BPE codes, text settings.

    ``text_settings`` say how the training text was prepared (the data folder's ``preprocess.json``,
    see :mod:`xlm.data.provenance`; None when the checkpoint does not say, as for original ``.pth``
    files). ``lowercase`` reads and sets their ``lower_remove_accent``. ``dictionary`` is None for a
    model-only Hugging Face folder.
    """

    def __init__(
        self,
        model: TransformerModel | EncoderDecoder,
        dictionary: Dictionary | None,
        lang2id: dict[str, int],
        causal: bool = False,
        bpe_codes: str | None = None,
        lowercase: bool | None = None,
        config: dict | None = None,
        source: str = "",
        text_settings: dict[str, Any] | None = None,
        path: str = "",
        spm_model: bytes | None = None,
    ):
        self.model = model
        self.dictionary = dictionary
        self.lang2id = lang2id
        self.causal = causal
        self.bpe_codes = bpe_codes
        self.config = config
        self.source = source
        self.path = path
        self.spm_model = spm_model  # the SentencePiece model (bytes) that segments raw text, when not BPE
        self.text_settings = dict(text_settings) if text_settings is not None else None
        if lowercase is not None:
            self.lowercase = lowercase

    def __repr__(self) -> str:
        n = len(self.dictionary) if self.dictionary is not None else "no"
        return (f"Pretrained({self.source or 'in memory'} {self.path}, {n} words, langs {sorted(self.lang2id)}, "
                f"causal={self.causal}, codes={'yes' if self.bpe_codes else 'no'}, text_settings={self.text_settings})")

    @property
    def lowercase(self) -> bool | None:
        """Whether training text was lowercased and stripped of accents (None: not recorded)."""
        return None if self.text_settings is None else bool(self.text_settings.get("lower_remove_accent", False))

    @lowercase.setter
    def lowercase(self, value: bool) -> None:
        from xlm.text import DEFAULT_SETTINGS

        base = self.text_settings if self.text_settings is not None else DEFAULT_SETTINGS
        self.text_settings = {**base, "lower_remove_accent": bool(value)}

    @property
    def id2lang(self) -> dict[int, str]:
        return {i: lang for lang, i in self.lang2id.items()}

    def tokenize(self, sentences: Sequence[str], lang: str, *, tokenized: bool = False) -> Inputs:
        """Raw sentences -> ``(ids, lengths, langs)`` for ``self.model``, prepared as the training text was.

        ``ids`` ``(batch, seq)`` int64, each sentence framed ``</s> w1 ... wn </s>`` and right-padded with
        ``<pad>``; ``lengths`` ``(batch,)``; ``langs`` ``(batch, seq)`` the id of ``lang``; all on the
        model's device. ``tokenized=True`` skips the tokenizer (BPE is still applied). Raises
        :class:`XLMError` when the model lacks what raw text needs (codes, vocabulary); see :mod:`xlm.text`.
        """
        from xlm.text import tokenize

        return tokenize(self, sentences, lang, tokenized)

    def encode(self, sentences: Sequence[str], lang: str, **kwargs: Any) -> Any:
        """Sentence embeddings (or per-token states) of raw sentences: see :func:`xlm.embed.encode`."""
        from xlm.embed import encode

        return encode(self, sentences, lang, **kwargs)


# -- loading ------------------------------------------------------------------------------------
def load_pretrained(
    path: str | os.PathLike,
    *,
    causal: bool | None = None,
    device: str | torch.device = "cpu",
    codes: str | os.PathLike | None = None,
    lowercase: bool | None = None,
    vocab: str | os.PathLike | None = None,
) -> Pretrained:
    """Load an original ``.pth``, a Hugging Face folder, or one of our checkpoints / run folders.

    What a file does not carry can be supplied (and what it carries overridden):

    - ``codes``: the BPE codes file the training text was segmented with (fastBPE ``codes`` or a
      Hugging Face ``merges.txt``). Original ``.pth`` files carry none, and raw text cannot be fed
      to a BPE vocabulary without them.
    - ``lowercase``: whether the training text was lowercased with accents removed (the released
      XLM 1024 models: True; XLM-17/100: False). Original ``.pth`` files do not say.
    - ``vocab``: the vocabulary (``TOKEN COUNT`` file or Hugging Face ``vocab.json``), for a
      model-only Hugging Face folder; a longer one is cut to the model's rows, as the original does.
    - ``causal``: Hugging Face hub CLM configs say ``causal: false`` (a name containing ``clm`` is
      taken as causal otherwise).
    """
    path = Path(path)
    if path.is_dir():
        if (path / "config.json").exists():
            from xlm.hf_folder import load_hf

            p = load_hf(path, causal)
        else:
            p = _load_ours(find_checkpoint(path), causal)
    elif path.exists():
        ckpt = safe_load(path)
        if not isinstance(ckpt, dict):
            raise XLMError(f"{path}: not a checkpoint (a {type(ckpt).__name__})")
        if ckpt.get("format") == "xlm":
            p = _from_ours(ckpt, path, causal)
        elif "params" in ckpt and ("model" in ckpt or "encoder" in ckpt):
            p = _from_original(ckpt, path, causal)
        else:
            raise XLMError(f"{path}: unrecognised checkpoint (keys: {', '.join(map(str, list(ckpt)[:8]))})")
    else:
        raise XLMError(f"{path}: no such file or folder")
    if vocab is not None:
        p.dictionary = _read_vocab_option(Path(vocab), p.model.n_words)
    if codes is not None:
        text = _read_codes_option(Path(codes))
        if p.bpe_codes is not None and p.bpe_codes != text:
            warn(f"{path}: using the codes of {codes}, not those the checkpoint carries")
        p.bpe_codes = text
    if lowercase is not None:
        p.lowercase = lowercase
    p.model.to(device).eval()
    return p


def _read_codes_option(path: Path) -> str:
    """fastBPE codes (``LEFT RIGHT COUNT``) or HF merges (``LEFT RIGHT``, ``#version`` header) -> codes text."""
    from xlm.data.bpe import read_codes

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise XLMError(f"codes: {path}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError:
        raise XLMError(f"codes: {path}: not UTF-8 text") from None
    first = text.split("\n", 1)[0]
    if first.startswith("#version") or len(first.split(" ")) == 2:
        text = interop.codes_from_merges(text, str(path))
        return text
    return "".join(f"{a} {b} {n}\n" for a, b, n in read_codes(path))  # checks every line


def _read_vocab_option(path: Path, n_words: int) -> Dictionary:
    if path.suffix == ".json":
        from xlm.hf_folder import read_json

        dico = interop.dictionary_from_hf_vocab(read_json(path), str(path))
    else:
        dico = Dictionary.read_vocab(path)
    if len(dico) > n_words:
        warn(f"vocab: {path} has {len(dico)} words but the model {n_words} rows: keeping the first {n_words}, "
             "as the original's max_vocab")
        dico = Dictionary(dico.id2word[N_SPECIAL:n_words], dico.counts[N_SPECIAL:n_words])
    elif len(dico) < n_words:
        raise XLMError(f"vocab: {path} has {len(dico)} words but the model has {n_words} embedding rows")
    return dico


def find_checkpoint(run_dir: Path) -> Path:
    """The best checkpoint of a run folder, else its most recent one."""
    ckpt_dir = run_dir / "checkpoints" if (run_dir / "checkpoints").is_dir() else run_dir
    best = sorted(ckpt_dir.glob("best*.pt"))
    if best:
        return best[0]
    steps = sorted(ckpt_dir.glob("*.pt"), key=lambda f: [int(n) for n in re.findall(r"\d+", f.stem)] or [-1])
    if not steps:
        raise XLMError(f"{run_dir}: no config.json (Hugging Face) and no *.pt checkpoint inside")
    return steps[-1]


def _load_ours(path: Path, causal: bool | None) -> Pretrained:
    ckpt = safe_load(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != "xlm":
        raise XLMError(f"{path}: not an xlm checkpoint")
    return _from_ours(ckpt, path, causal)


def _from_ours(ckpt: dict, path: Path, causal: bool | None) -> Pretrained:
    for key in ("model", "model_config", "n_words", "lang2id", "dictionary"):
        if key not in ckpt:
            raise XLMError(f"{path}: xlm checkpoint lacks {key!r}")
    if ckpt.get("version", 1) > FORMAT_VERSION:
        raise XLMError(f"{path}: checkpoint format version {ckpt['version']} is newer than this xlm ({FORMAT_VERSION})")
    try:
        cfg = ModelConfig(**ckpt["model_config"])
    except TypeError as e:
        raise XLMError(f"{path}: model_config: {e}") from None
    lang2id = dict(ckpt["lang2id"])
    model_class = TransformerModel if cfg.encoder_only else EncoderDecoder
    model = model_class(cfg, int(ckpt["n_words"]), max(1, len(lang2id)))
    state = interop.strip_ddp_prefix(ckpt["model"])
    if isinstance(model, EncoderDecoder):  # keys "encoder.*" and "decoder.*": each side on its own
        for side in ("encoder", "decoder"):
            part = {k[len(side) + 1:]: v for k, v in state.items() if k.startswith(side + ".")}
            interop.load_state_into(getattr(model, side), part, f"{path} ({side})")
        if any(not k.startswith(("encoder.", "decoder.")) for k in state):
            raise XLMError(f"{path}: unexpected parameter outside encoder.* and decoder.*")
    else:
        interop.load_state_into(model, state, str(path))
    d = ckpt["dictionary"]
    counts = dict(zip(d["words"], d.get("counts") or []))
    if d.get("layout", "xlm") == "xlmr":
        words = list(d["words"])
        dico = Dictionary.xlmr(words[4:-1], [int(counts.get(w, 0)) for w in words[4:-1]])
        if dico.id2word != words:
            raise XLMError(f"{path}: dictionary: not XLM-R's layout (<s> <pad> </s> <unk> ... <mask>)")
    else:
        dico = Dictionary.from_id2word(list(d["words"]), counts)
    config = ckpt.get("config")
    if causal is None:
        causal = ckpt.get("causal")
    if causal is None and config:
        obj = config.get("objectives", {})
        causal = bool(obj.get("clm")) and not obj.get("mlm")
    return Pretrained(model, dico, lang2id, bool(causal), ckpt.get("bpe_codes"), None, config, "xlm",
                      _settings_of_ours(ckpt), str(path), spm_model=ckpt.get("spm_model"))


def _settings_of_ours(ckpt: dict) -> dict | None:
    """``text_settings``; checkpoints written before it existed: ``lowercase``, else the data folder's record."""
    if ckpt.get("text_settings") is not None:
        return dict(ckpt["text_settings"])
    from xlm.data import provenance
    from xlm.text import DEFAULT_SETTINGS

    if ckpt.get("lowercase") is not None:  # written by the sacremoses-based tokenizer's versions: no "tokenizer"
        legacy = {k: v for k, v in DEFAULT_SETTINGS.items() if k != "tokenizer"}
        return {**legacy, "lower_remove_accent": bool(ckpt["lowercase"])}
    data_path = ((ckpt.get("config") or {}).get("data") or {}).get("path")
    if data_path:
        settings, _ = provenance.for_training(data_path, {}, bpe_vocab=False)
        if provenance.known(settings):
            return settings
    return None


def _from_original(ckpt: dict, path: Path, causal: bool | None) -> Pretrained:
    if isinstance(ckpt.get("encoder"), dict) and isinstance(ckpt.get("decoder"), dict):
        return _from_original_mt(ckpt, path)
    state = ckpt.get("model", ckpt.get("encoder"))
    if not isinstance(state, dict):
        raise XLMError(f"{path}: 'model' is not a state dict")
    state = interop.strip_ddp_prefix(state)
    params = ckpt["params"]
    if not isinstance(params, dict):
        raise XLMError(f"{path}: 'params' is not a mapping")
    try:
        cfg, n_words, n_langs = interop.model_config_from_original(params, state)
        lang2id = interop.lang2id_from_original(params)
        model = TransformerModel(cfg, n_words, max(n_langs, len(lang2id), 1))
        interop.load_state_into(model, state, str(path))
        dico = interop.dictionary_from_original(ckpt, n_words)
    except XLMError as e:
        raise XLMError(f"{path}: {e}" if not str(e).startswith(str(path)) else str(e)) from None
    if causal is None:
        clm, mlm = params.get("clm_steps") or [], params.get("mlm_steps") or []
        causal = bool(clm) and not mlm
    # an original checkpoint records neither its codes nor how its text was tokenized
    return Pretrained(model, dico, lang2id, bool(causal), None, None, None, "original", None, str(path))


def _from_original_mt(ckpt: dict, path: Path) -> Pretrained:
    """An original translation checkpoint: ``encoder`` and ``decoder`` state dicts (``train.py`` with
    ``--encoder_only false``), loaded into an :class:`EncoderDecoder` under the same names."""
    params = ckpt["params"]
    if not isinstance(params, dict):
        raise XLMError(f"{path}: 'params' is not a mapping")
    enc_state = interop.strip_ddp_prefix(ckpt["encoder"])
    dec_state = interop.strip_ddp_prefix(ckpt["decoder"])
    try:
        cfg, n_words, n_langs = interop.model_config_from_original(params, enc_state)
        cfg = dataclasses.replace(cfg, encoder_only=False)
        lang2id = interop.lang2id_from_original(params)
        model = EncoderDecoder(cfg, n_words, max(n_langs, len(lang2id), 1))
        interop.load_state_into(model.encoder, enc_state, f"{path} (encoder)")
        interop.load_state_into(model.decoder, dec_state, f"{path} (decoder)")
        dico = interop.dictionary_from_original(ckpt, n_words)
    except XLMError as e:
        raise XLMError(f"{path}: {e}" if not str(e).startswith(str(path)) else str(e)) from None
    return Pretrained(model, dico, lang2id, False, None, None, None, "original", None, str(path))


# -- saving -------------------------------------------------------------------------------------
def save_pretrained(p: Pretrained, path: str | os.PathLike, format: Format = "xlm") -> Path:
    """Write ``p`` as our checkpoint file, an original ``.pth`` file, or a Hugging Face folder."""
    path = Path(path)
    model = p.model
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if p.dictionary is None and format != "hf":
        raise XLMError(f"{p.path or 'model'}: no vocabulary to write in the {format} format; load it with vocab=PATH")
    if format == "xlm":
        atomic_save(
            {
                "format": "xlm",
                "version": FORMAT_VERSION,
                "model": state,
                "model_config": dataclasses.asdict(model.cfg),
                "n_words": model.n_words,
                "lang2id": dict(p.lang2id),
                "dictionary": {"words": list(p.dictionary.id2word), "counts": list(p.dictionary.counts),
                               **({"layout": p.dictionary.layout} if p.dictionary.layout != "xlm" else {})},
                "config": p.config,
                "bpe_codes": p.bpe_codes,
                **({"spm_model": p.spm_model} if p.spm_model is not None else {}),
                "text_settings": p.text_settings,
                "causal": p.causal,
            },
            path,
        )
    elif format == "original":
        from xlm.model.interop_xlmr import is_xlmr

        if is_xlmr(model.cfg) or p.dictionary.layout != "xlm":
            raise XLMError("the original XLM format cannot hold an XLM-R-style model (positions, token types, "
                           "LM head transform, special ids): export it with format='hf'")
        if model.cfg.pre_norm:
            raise XLMError("model.pre_norm: the original XLM is post-norm only; cannot export a pre-norm model")
        d = p.dictionary
        if isinstance(model, EncoderDecoder):  # the original's MT layout: two state dicts
            weights = {"encoder": {k: v.detach().cpu() for k, v in model.encoder.state_dict().items()},
                       "decoder": {k: v.detach().cpu() for k, v in model.decoder.state_dict().items()}}
        else:
            weights = {"model": state}
        atomic_save(  # exactly the original's keys: codes and text settings have no place there
            {
                **weights,
                "params": interop.original_params(model.cfg, model.n_words, p.lang2id, p.causal),
                "dico_id2word": dict(enumerate(d.id2word)),
                "dico_word2id": dict(d.word2id),
                "dico_counts": dict(zip(d.id2word, d.counts)),
                "epoch": 0,
                "n_total_iter": 0,
                "best_metrics": {},
                "best_stopping_criterion": -1e12,
            },
            path,
        )
    elif format == "hf":
        if isinstance(model, EncoderDecoder):
            raise XLMError("format hf: Hugging Face's XLM classes have no encoder-decoder; save as xlm or original")
        from xlm.hf_folder import save_hf

        save_hf(p, path, state)
    else:
        raise XLMError(f"unknown format {format!r}; choose xlm, original or hf")
    return path
