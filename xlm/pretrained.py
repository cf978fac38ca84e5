"""Load and save pretrained models in any of three formats, auto-detected on load.

- ``xlm``: our checkpoint file (``{"format": "xlm", ...}``), or a run folder (its best checkpoint,
  else its latest);
- ``original``: a ``.pth`` from facebookresearch/XLM (``model`` or ``encoder``, ``params``, ``dico_*``);
- ``hf``: a Hugging Face folder (``config.json``, ``model.safetensors`` or ``pytorch_model.bin``,
  ``vocab.json``, ``merges.txt``).

Every file is opened with :func:`xlm.serialization.safe_load`: loading never runs pickled code.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from xlm.config import ModelConfig
from xlm.data.dictionary import Dictionary
from xlm.errors import XLMError
from xlm.io import atomic_write_text
from xlm.model import interop
from xlm.model.transformer import TransformerModel
from xlm.serialization import atomic_save, safe_load

Format = Literal["xlm", "original", "hf"]
FORMAT_VERSION = 1


@dataclass
class Pretrained:
    """A model with everything needed to feed it: vocabulary, language ids, BPE codes."""

    model: TransformerModel
    dictionary: Dictionary
    lang2id: dict[str, int]
    causal: bool = False
    bpe_codes: str | None = None
    lowercase: bool = False
    config: dict | None = field(default=None, repr=False)
    source: str = ""

    @property
    def id2lang(self) -> dict[int, str]:
        return {i: lang for lang, i in self.lang2id.items()}

    def encode(self, sentences: Sequence[str], lang: str, **kwargs: Any) -> Any:
        """Sentence embeddings (or per-token states) of raw sentences: see :func:`xlm.embed.encode`."""
        from xlm.embed import encode

        return encode(self, sentences, lang, **kwargs)


# -- loading ------------------------------------------------------------------------------------
def load_pretrained(
    path: str | os.PathLike, *, causal: bool | None = None, device: str | torch.device = "cpu"
) -> Pretrained:
    """Load an original ``.pth``, a Hugging Face folder, or one of our checkpoints / run folders.

    ``causal`` overrides what the checkpoint says; use it for Hugging Face hub CLM models, whose
    configs say ``causal: false`` (a name containing ``clm`` is taken as causal otherwise).
    """
    path = Path(path)
    if path.is_dir():
        if (path / "config.json").exists():
            p = _load_hf(path, causal)
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
    p.model.to(device).eval()
    return p


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
    model = TransformerModel(cfg, int(ckpt["n_words"]), max(1, len(lang2id)))
    interop.load_state_into(model, interop.strip_ddp_prefix(ckpt["model"]), str(path))
    d = ckpt["dictionary"]
    dico = Dictionary.from_id2word(list(d["words"]), dict(zip(d["words"], d.get("counts") or [])))
    config = ckpt.get("config")
    if causal is None:
        causal = ckpt.get("causal")
    if causal is None and config:
        obj = config.get("objectives", {})
        causal = bool(obj.get("clm")) and not obj.get("mlm")
    lowercase = ckpt.get("lowercase")
    if lowercase is None and config and config.get("data", {}).get("path"):
        from xlm.data.pipeline import read_text_settings  # training checkpoints: ask the data folder

        lowercase = read_text_settings(config["data"]["path"]).get("lower_remove_accent")
    return Pretrained(model, dico, lang2id, bool(causal), ckpt.get("bpe_codes"), bool(lowercase), config, "xlm")


def _from_original(ckpt: dict, path: Path, causal: bool | None) -> Pretrained:
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
    return Pretrained(model, dico, lang2id, bool(causal), None, False, None, "original")


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise XLMError(f"{path}: missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise XLMError(f"{path}: invalid JSON ({e})") from None
    if not isinstance(data, dict):
        raise XLMError(f"{path}: expected a JSON object")
    return data


def _load_hf(folder: Path, causal: bool | None) -> Pretrained:
    conf = _read_json(folder / "config.json")
    if conf.get("model_type", "xlm") != "xlm":
        raise XLMError(f"{folder / 'config.json'}: model_type {conf.get('model_type')!r} is not 'xlm'")
    cfg, n_words, n_langs = interop.model_config_from_hf(conf)
    ours = conf.get("xlm") or {}
    if isinstance(ours.get("model_config"), dict):  # written by us: keeps fields HF does not know
        cfg = dataclasses.replace(cfg, **{k: v for k, v in ours["model_config"].items() if k in ("pre_norm",)})
    lang2id = {str(k): int(v) for k, v in (conf.get("lang2id") or {}).items()}
    if not lang2id and isinstance(conf.get("id2lang"), dict):
        lang2id = {str(v): int(k) for k, v in conf["id2lang"].items()}
    if (folder / "model.safetensors").exists():
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise XLMError("reading model.safetensors needs the safetensors package: pip install safetensors") from None
        try:
            state = load_file(str(folder / "model.safetensors"))
        except Exception as e:  # safetensors raises its own error types
            raise XLMError(f"{folder / 'model.safetensors'}: corrupt ({str(e)[:120]})") from None
    elif (folder / "pytorch_model.bin").exists():
        state = safe_load(folder / "pytorch_model.bin")
    else:
        raise XLMError(f"{folder}: neither model.safetensors nor pytorch_model.bin")
    state = interop.hf_state_to_ours(state)
    model = TransformerModel(cfg, n_words, max(n_langs, 1))
    interop.load_state_into(model, state, str(folder))
    dico = interop.dictionary_from_hf_vocab(_read_json(folder / "vocab.json"), str(folder / "vocab.json"))
    if len(dico) != n_words:
        raise XLMError(f"{folder / 'vocab.json'}: {len(dico)} tokens but the model has {n_words} embedding rows")
    codes = None
    if (folder / "merges.txt").exists():
        codes = interop.codes_from_merges(
            (folder / "merges.txt").read_text(encoding="utf-8"), str(folder / "merges.txt")
        )
    lowercase = False
    if (folder / "tokenizer_config.json").exists():
        lowercase = bool(_read_json(folder / "tokenizer_config.json").get("do_lowercase_and_remove_accent", False))
    if causal is None:
        if "causal" in ours:
            causal = bool(ours["causal"])
        else:  # hub CLM configs say causal: false; their names say clm
            name = f"{conf.get('_name_or_path', '')} {folder.name}".lower()
            causal = bool(conf.get("causal", False)) or "clm" in name
    return Pretrained(model, dico, lang2id, bool(causal), codes, lowercase, None, "hf")


# -- saving -------------------------------------------------------------------------------------
def save_pretrained(p: Pretrained, path: str | os.PathLike, format: Format = "xlm") -> Path:
    """Write ``p`` as our checkpoint file, an original ``.pth`` file, or a Hugging Face folder."""
    path = Path(path)
    model = p.model
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if format == "xlm":
        atomic_save(
            {
                "format": "xlm",
                "version": FORMAT_VERSION,
                "model": state,
                "model_config": dataclasses.asdict(model.cfg),
                "n_words": model.n_words,
                "lang2id": dict(p.lang2id),
                "dictionary": {"words": list(p.dictionary.id2word), "counts": list(p.dictionary.counts)},
                "config": p.config,
                "bpe_codes": p.bpe_codes,
                "causal": p.causal,
                "lowercase": p.lowercase,
            },
            path,
        )
    elif format == "original":
        if model.cfg.pre_norm:
            raise XLMError("model.pre_norm: the original XLM is post-norm only; cannot export a pre-norm model")
        d = p.dictionary
        atomic_save(
            {
                "model": state,
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
        _save_hf(p, path, state)
    else:
        raise XLMError(f"unknown format {format!r}; choose xlm, original or hf")
    return path


def _save_hf(p: Pretrained, folder: Path, state: dict) -> None:
    try:
        from safetensors.torch import save_file
    except ImportError:
        raise XLMError("exporting to Hugging Face needs the safetensors package: pip install safetensors") from None
    model = p.model
    conf = interop.hf_config(model.cfg, model.n_words, p.lang2id, p.causal)
    folder.mkdir(parents=True, exist_ok=True)
    hf_state = interop.ours_to_hf_state(state, tied=model.cfg.share_inout_emb)
    tmp = folder / ".model.safetensors.tmp"
    save_file(hf_state, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, folder / "model.safetensors")
    atomic_write_text(folder / "config.json", interop.dumps(conf))
    atomic_write_text(folder / "vocab.json", interop.dumps(interop.hf_vocab(p.dictionary)))
    atomic_write_text(
        folder / "tokenizer_config.json",
        interop.dumps(interop.hf_tokenizer_config(p.lang2id, p.lowercase, model.cfg.max_positions)),
    )
    if p.bpe_codes:
        atomic_write_text(folder / "merges.txt", p.bpe_codes)
