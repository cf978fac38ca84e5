"""Hugging Face folders: read any ``XLMWithLMHeadModel`` folder, write one whose tokenizer is the model's.

Reading: ``config.json`` + ``model.safetensors`` (or ``pytorch_model.bin``) are required;
``vocab.json``, ``merges.txt`` and ``tokenizer_config.json`` are optional (a model-only folder,
as ``XLMWithLMHeadModel.save_pretrained`` writes it, loads; raw text then needs ``vocab=``).

Writing: the model, and a tokenizer that ``XLMTokenizer.from_pretrained`` reads to prepare text as
the training text was: ``vocab.json`` and ``merges.txt`` (the codes), ``do_lowercase_and_remove_accent``
from the model's text settings, and ``bos_token: </s>`` so that it frames a sentence
``</s> w1 ... wn </s>`` as the original's batches do (HF's default is ``<s> ... </s>``). What HF's
text pipeline does differently from ours (its sacremoses settings, control characters, zh
segmentation) is measured by ``scripts/hf_tokenizer_agreement.py`` and listed in docs/interop.md.
``config.json`` also carries what ``generate()`` reads: ``mask_token_id`` (5, ``<special1>``),
``lang_id``, and bos/eos ``</s>`` (1), pad 2; ``generation_config.json`` repeats the token ids.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from xlm.data.dictionary import EOS_INDEX, PAD_INDEX, Dictionary
from xlm.errors import XLMError, warn
from xlm.io import atomic_write_text
from xlm.model import interop, interop_xlmr
from xlm.model.transformer import TransformerModel
from xlm.serialization import safe_load

if TYPE_CHECKING:
    from xlm.pretrained import Pretrained


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise XLMError(f"{path}: missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise XLMError(f"{path}: invalid JSON ({e})") from None
    if not isinstance(data, dict):
        raise XLMError(f"{path}: expected a JSON object")
    return data


def _read_state(folder: Path) -> dict:
    if (folder / "model.safetensors").exists():
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise XLMError("reading model.safetensors needs the safetensors package: pip install safetensors") from None
        try:
            return load_file(str(folder / "model.safetensors"))
        except Exception as e:  # safetensors raises its own error types
            raise XLMError(f"{folder / 'model.safetensors'}: corrupt ({str(e)[:120]})") from None
    if (folder / "pytorch_model.bin").exists():
        return safe_load(folder / "pytorch_model.bin")
    raise XLMError(f"{folder}: neither model.safetensors nor pytorch_model.bin")


def load_hf(folder: Path, causal: bool | None) -> Pretrained:
    from xlm.pretrained import Pretrained
    from xlm.text import DEFAULT_SETTINGS

    conf = read_json(folder / "config.json")
    if conf.get("model_type") == interop_xlmr.MODEL_TYPE:
        return load_xlmr(folder, conf)
    if conf.get("model_type") == interop_xlmr.ERNIE_M_TYPE:
        return load_ernie_m(folder, conf)
    if conf.get("model_type", "xlm") != "xlm":
        raise XLMError(f"{folder / 'config.json'}: model_type {conf.get('model_type')!r} is neither 'xlm' nor "
                       f"'{interop_xlmr.MODEL_TYPE}'")
    cfg, n_words, n_langs = interop.model_config_from_hf(conf)
    ours = conf.get("xlm") or {}
    if isinstance(ours.get("model_config"), dict):  # written by us: keeps fields HF does not know
        cfg = dataclasses.replace(cfg, **{k: v for k, v in ours["model_config"].items() if k in ("pre_norm",)})
    lang2id = {str(k): int(v) for k, v in (conf.get("lang2id") or {}).items()}
    if not lang2id and isinstance(conf.get("id2lang"), dict):
        lang2id = {str(v): int(k) for k, v in conf["id2lang"].items()}
    model = TransformerModel(cfg, n_words, max(n_langs, 1))
    interop.load_state_into(model, interop.hf_state_to_ours(_read_state(folder)), str(folder))
    dico = None  # a model-only folder has no vocab.json: raw text then needs load_pretrained(..., vocab=)
    if (folder / "vocab.json").exists():
        dico = interop.dictionary_from_hf_vocab(read_json(folder / "vocab.json"), str(folder / "vocab.json"))
        if len(dico) != n_words:
            raise XLMError(f"{folder / 'vocab.json'}: {len(dico)} tokens but the model has {n_words} embedding rows")
    codes = None
    if (folder / "merges.txt").exists():
        codes = interop.codes_from_merges((folder / "merges.txt").read_text(encoding="utf-8"),
                                          str(folder / "merges.txt"))
    settings = ours.get("text_settings")  # ours; else what HF's tokenizer would do: Moses, lowercasing as it says
    if settings is None and (folder / "tokenizer_config.json").exists():
        lower = read_json(folder / "tokenizer_config.json").get("do_lowercase_and_remove_accent", True)  # HF default
        settings = {**DEFAULT_SETTINGS, "lower_remove_accent": bool(lower)}
    if causal is None:
        if "causal" in ours:
            causal = bool(ours["causal"])
        else:  # hub CLM configs say causal: false; their names say clm
            name = f"{conf.get('_name_or_path', '')} {folder.name}".lower()
            causal = bool(conf.get("causal", False)) or "clm" in name
    return Pretrained(model, dico, lang2id, bool(causal), codes, None, None, "hf", settings, str(folder))


def _save_file():  # noqa: ANN202
    try:
        from safetensors.torch import save_file
    except ImportError:
        raise XLMError("exporting to Hugging Face needs the safetensors package: pip install safetensors") from None
    return save_file


def save_hf(p: Pretrained, folder: Path, state: dict) -> None:
    model = p.model
    if interop_xlmr.is_xlmr(model.cfg):
        return save_xlmr(p, folder, state)
    save_file = _save_file()
    conf = interop.hf_config(model.cfg, model.n_words, p.lang2id, p.causal)
    conf["xlm"]["text_settings"] = p.text_settings
    folder.mkdir(parents=True, exist_ok=True)
    hf_state = interop.ours_to_hf_state(state, tied=model.cfg.share_inout_emb)
    tmp = folder / ".model.safetensors.tmp"
    save_file(hf_state, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, folder / "model.safetensors")
    atomic_write_text(folder / "config.json", interop.dumps(conf))
    atomic_write_text(folder / "generation_config.json", interop.dumps(
        {"bos_token_id": EOS_INDEX, "eos_token_id": EOS_INDEX, "pad_token_id": PAD_INDEX}))
    if p.dictionary is None:
        return  # model only, as it came
    write_tokenizer(folder, p.dictionary, p.bpe_codes, p.text_settings, p.lang2id, model.cfg.max_positions)
    _warn_what_hf_cannot_do(p, folder)


def write_tokenizer(folder: Path, dictionary: Dictionary, codes: str | None, settings: dict | None,
                    lang2id: dict[str, int], max_len: int) -> None:
    """``vocab.json``, ``merges.txt`` (when there are codes) and ``tokenizer_config.json`` for ``XLMTokenizer``."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "vocab.json", interop.dumps(interop.hf_vocab(dictionary)))
    lowercase = bool((settings or {}).get("lower_remove_accent", False))
    atomic_write_text(folder / "tokenizer_config.json",
                      interop.dumps(interop.hf_tokenizer_config(lang2id, lowercase, max_len)))
    if codes:  # HF drops the last line when it has no newline
        atomic_write_text(folder / "merges.txt", codes if codes.endswith("\n") else codes + "\n")


def _warn_what_hf_cannot_do(p: Pretrained, folder: Path) -> None:
    settings = p.text_settings
    if settings is None:
        warn(f"{folder}: the model does not record how its text was tokenized; the exported tokenizer does Moses "
             "without lowercasing (load the model with lowercase=True/False to say how)")
    elif not settings.get("tokenize", True) or settings.get("pre_segmented"):
        how = ("not Moses-tokenized" if not settings.get("tokenize", True)
               else "pre-segmented for " + ", ".join(settings["pre_segmented"]))
        warn(f"{folder}: the training text was {how}, which XLMTokenizer cannot redo: prepare such text with "
             "'preprocess.py tokenize' and call it with bypass_tokenizer=True")
    elif settings.get("segmentation") == "sentencepiece":
        warn(f"{folder}: the model reads SentencePiece pieces; XLMTokenizer applies BPE merges and cannot prepare "
             "its text")
    if p.bpe_codes is None and any(w.endswith("@@") for w in p.dictionary.id2word):  # type: ignore[union-attr]
        warn(f"{folder}: no merges.txt (the model carries no BPE codes): XLMTokenizer cannot split words into the "
             "vocabulary's pieces; load the model with codes=PATH before exporting")


# -- xlm-roberta --------------------------------------------------------------------------------
SPM_FILE = "sentencepiece.bpe.model"
XLMR_TEXT_SETTINGS = {"tokenize": False, "lower_remove_accent": False, "pre_segmented": [],
                      "segmentation": "sentencepiece"}  # raw text goes to SentencePiece as it is


def load_xlmr(folder: Path, conf: dict) -> Pretrained:
    """An ``XLMRobertaForMaskedLM`` folder; the vocabulary from ``sentencepiece.bpe.model`` (kept, so that raw
    text can be segmented) or else ``tokenizer.json``; neither: a model-only folder."""
    from xlm.data.sentencepiece import load_model
    from xlm.pretrained import Pretrained

    cfg, n_words = interop_xlmr.model_config_from_xlmr(conf, str(folder / "config.json"))
    model = TransformerModel(cfg, n_words, 1)
    state = interop_xlmr.xlmr_state_to_ours(_read_state(folder), str(folder))
    interop.load_state_into(model, state, str(folder))
    dico, spm = None, None
    if (folder / SPM_FILE).exists():
        spm = (folder / SPM_FILE).read_bytes()
        dico = interop_xlmr.dictionary_from_spm(load_model(folder / SPM_FILE), str(folder / SPM_FILE))
    elif (folder / "tokenizer.json").exists():
        dico = interop_xlmr.dictionary_from_tokenizer_json(read_json(folder / "tokenizer.json"),
                                                           str(folder / "tokenizer.json"))
    if dico is not None and len(dico) != n_words:
        raise XLMError(f"{folder}: the vocabulary has {len(dico)} ids but the model {n_words} embedding rows")
    if dico is not None and dico.pad_index != cfg.pad_index:
        raise XLMError(f"{folder / 'config.json'}: pad_token_id {cfg.pad_index}, but <pad> is id {dico.pad_index}")
    return Pretrained(model, dico, {}, False, None, None, None, "hf", dict(XLMR_TEXT_SETTINGS), str(folder),
                      spm_model=spm)


def load_ernie_m(folder: Path, conf: dict) -> Pretrained:
    """An ``ErnieMModel`` folder (the layout of transformers 4.x; 5.x has no such class): the encoder, and a new
    output layer (ERNIE-M ships no MLM head): the tied embeddings with a zero bias. No vocabulary is read."""
    import torch

    from xlm.pretrained import Pretrained

    cfg, n_words = interop_xlmr.model_config_from_ernie_m(conf, str(folder / "config.json"))
    model = TransformerModel(cfg, n_words, 1)
    state = interop_xlmr.ernie_m_state_to_ours(_read_state(folder), str(folder))
    state["pred_layer.proj.bias"] = torch.zeros(n_words)
    interop.load_state_into(model, state, str(folder))
    warn(f"{folder}: ERNIE-M ships no MLM head: the output layer is new (the tied embeddings, zero bias); its "
         "vocabulary (vocab.txt) is not read: feed ids, or pass pieces' ids yourself")
    return Pretrained(model, None, {}, False, None, None, None, "hf", None, str(folder))


def save_xlmr(p: Pretrained, folder: Path, state: dict) -> None:
    """Write an ``XLMRobertaForMaskedLM`` folder. A model with XLM's vocabulary layout (continued pretraining
    on our data) has its word rows moved to XLM-R's (:func:`interop_xlmr.to_xlmr_layout`)."""
    save_file = _save_file()
    dico = p.dictionary
    if dico is not None:
        state, dico = interop_xlmr.to_xlmr_layout(state, dico)
    n_words = len(dico) if dico is not None else p.model.n_words
    conf = interop_xlmr.xlmr_config(p.model.cfg, n_words, dico)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".model.safetensors.tmp"
    save_file(interop_xlmr.ours_to_xlmr_state(state, p.model.cfg.share_inout_emb), str(tmp),
              metadata={"format": "pt"})
    os.replace(tmp, folder / "model.safetensors")
    atomic_write_text(folder / "config.json", interop.dumps(conf))
    if dico is None:
        return
    if p.spm_model is not None:
        from xlm.data.sentencepiece import require_sentencepiece

        sp = require_sentencepiece().SentencePieceProcessor(model_proto=p.spm_model)
        if interop_xlmr.dictionary_from_spm(sp) == dico:
            (folder / SPM_FILE).write_bytes(p.spm_model)
            atomic_write_text(folder / "tokenizer_config.json", interop.dumps(
                {"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": conf["max_position_embeddings"] - 2}))
            return
    warn(f"{folder}: no tokenizer written: the vocabulary is not in the order of a SentencePiece model the "
         "checkpoint carries (ids from 4 = pieces from 3), which XLMRobertaTokenizer needs")
