"""Checkpoint interop: original XLM ``.pth`` files and Hugging Face ``XLMWithLMHeadModel`` folders.

Both use the same parameter names as :class:`TransformerModel`, so conversion is a key map plus a
translation of hyper-parameters. Everything here works on plain dicts and tensors; file access
and format detection live in :mod:`xlm.pretrained`.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from typing import Any

import torch
from torch import Tensor

from xlm.config import ModelConfig
from xlm.data.dictionary import N_SPECIAL, SPECIAL_WORDS, Dictionary
from xlm.errors import XLMError

HF_PREFIX = "transformer."
BPE_CONT, BPE_EOW = "@@", "</w>"


# -- state dicts --------------------------------------------------------------------------------
def strip_ddp_prefix(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Drop ``module.`` when every key has it (checkpoints saved from a DDP-wrapped model)."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module.") :]: v for k, v in state.items()}
    return state


def load_state_into(model: torch.nn.Module, state: dict[str, Tensor], source: str) -> None:
    """Strictly load ``state``; shape mismatches and missing or unexpected keys name the parameter."""
    expected = model.state_dict()
    state = dict(state)
    if getattr(model.cfg, "share_inout_emb", False):
        # a tied output projection may be absent (HF omits it); it is the embedding table anyway
        state.setdefault("pred_layer.proj.weight", state.get("embeddings.weight"))
    missing = [k for k in expected if k not in state or state[k] is None]
    unexpected = [k for k in state if k not in expected]
    if missing:
        raise XLMError(
            f"{source}: missing parameter {missing[0]!r}"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    if unexpected:
        raise XLMError(
            f"{source}: unexpected parameter {unexpected[0]!r} not in this architecture"
            + (f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else "")
        )
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise XLMError(
                f"{source}: parameter {k!r} has shape {list(state[k].shape)} in the checkpoint "
                f"but {list(v.shape)} in the model (different architecture or vocabulary)"
            )
    model.load_state_dict({k: state[k] for k in expected}, strict=True)


def _plain(value: Any) -> Any:
    """numpy/torch scalars -> Python numbers (original ``params`` hold all sorts)."""
    if isinstance(value, Tensor) and value.numel() == 1:
        return value.item()
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        return value.item()
    return value


# -- original XLM -------------------------------------------------------------------------------
def model_config_from_original(params: dict, state: dict[str, Tensor]) -> tuple[ModelConfig, int, int]:
    """Translate an original checkpoint's ``params`` (argparse dict) into our config, n_words, n_langs."""
    p = {k: _plain(v) for k, v in params.items()}
    if p.get("asm"):
        raise XLMError("original checkpoint uses an adaptive softmax output (asm=True), which xlm does not support")
    if "embeddings.weight" not in state:
        raise XLMError("original checkpoint: no 'embeddings.weight' in the model state")
    n_words, emb_dim = state["embeddings.weight"].shape
    n_langs = int(p.get("n_langs", 1))
    use_lang_emb = bool(p.get("use_lang_emb", True))
    if n_langs > 1 and use_lang_emb and "lang_embeddings.weight" not in state:
        use_lang_emb = False  # some exports drop the flag; trust the weights
    cfg = ModelConfig(
        emb_dim=int(p.get("emb_dim", emb_dim)),
        n_layers=int(p["n_layers"])
        if "n_layers" in p
        else 1 + max(int(k.split(".")[1]) for k in state if k.startswith("attentions.")),
        n_heads=int(p.get("n_heads", 8)),
        dropout=float(p.get("dropout", 0.0)),
        attention_dropout=float(p.get("attention_dropout", 0.0)),
        gelu_activation=bool(p.get("gelu_activation", False)),
        sinusoidal_embeddings=bool(p.get("sinusoidal_embeddings", False)),
        use_lang_emb=use_lang_emb,
        share_inout_emb=bool(p.get("share_inout_emb", True)),
        max_positions=int(state["position_embeddings.weight"].shape[0])
        if "position_embeddings.weight" in state
        else 512,
    )
    return cfg, int(n_words), n_langs


def lang2id_from_original(params: dict) -> dict[str, int]:
    if isinstance(params.get("lang2id"), dict):
        return {str(k): int(_plain(v)) for k, v in params["lang2id"].items()}
    if isinstance(params.get("id2lang"), dict):
        return {str(v): int(_plain(k)) for k, v in params["id2lang"].items()}
    langs = params.get("langs")
    if isinstance(langs, (list, tuple)):
        return {lang: i for i, lang in enumerate(sorted(langs))}
    return {}


def dictionary_from_original(ckpt: dict, n_words: int) -> Dictionary:
    """Rebuild the vocabulary; a dictionary longer than the embedding table is cut to fit (the
    released vocab files hold more words than the released models, the original's #1 complaint)."""
    id2word = ckpt.get("dico_id2word")
    if id2word is None:
        raise XLMError("original checkpoint: no 'dico_id2word'")
    d = Dictionary.from_id2word(id2word, ckpt.get("dico_counts"))
    if len(d) > n_words:
        warnings.warn(
            f"dictionary has {len(d)} words but the model {n_words}: keeping the first {n_words}", stacklevel=2
        )
        d = Dictionary(d.id2word[N_SPECIAL:n_words], d.counts[N_SPECIAL:n_words])
    elif len(d) < n_words:
        raise XLMError(f"original checkpoint: dictionary has {len(d)} words but the embedding table {n_words} rows")
    return d


def original_params(cfg: ModelConfig, n_words: int, lang2id: dict[str, int], causal: bool) -> dict:
    """The ``params`` dict an original checkpoint carries (what its reload code and HF's converter read)."""
    langs = sorted(lang2id, key=lang2id.get)
    return {
        "emb_dim": cfg.emb_dim,
        "n_layers": cfg.n_layers,
        "n_heads": cfg.n_heads,
        "dropout": cfg.dropout,
        "attention_dropout": cfg.attention_dropout,
        "gelu_activation": cfg.gelu_activation,
        "sinusoidal_embeddings": cfg.sinusoidal_embeddings,
        "share_inout_emb": cfg.share_inout_emb,
        "use_lang_emb": cfg.use_lang_emb,
        "asm": False,
        "encoder_only": cfg.encoder_only,
        "n_words": n_words,
        "n_langs": max(1, len(lang2id)),
        "langs": langs,
        "lang2id": dict(lang2id),
        "id2lang": {i: lang for lang, i in lang2id.items()},
        "bos_index": 0,
        "eos_index": 1,
        "pad_index": 2,
        "unk_index": 3,
        "mask_index": 5,
        "max_vocab": -1,
        "min_count": 0,
        "clm_steps": [(lang, None) for lang in langs] if causal else [],
        "mlm_steps": [] if causal else [(lang, None) for lang in langs],
    }


# -- Hugging Face -------------------------------------------------------------------------------
def hf_state_to_ours(state: dict[str, Tensor]) -> dict[str, Tensor]:
    out = {}
    for k, v in strip_ddp_prefix(state).items():
        if k.startswith(HF_PREFIX):
            out[k[len(HF_PREFIX) :]] = v
        elif k.startswith("pred_layer."):
            out[k] = v
        elif k.endswith("position_ids"):
            continue  # a non-persistent buffer in recent versions, saved by some older ones
        else:
            out[k] = v
    return out


def ours_to_hf_state(state: dict[str, Tensor], tied: bool) -> dict[str, Tensor]:
    """HF keys; the tied output weight is left out, as ``save_pretrained`` does (safetensors refuses aliases)."""
    out = {}
    for k, v in state.items():
        if k == "pred_layer.proj.weight" and tied:
            continue
        out[k if k.startswith("pred_layer.") else HF_PREFIX + k] = v.detach().contiguous()
    return out


def model_config_from_hf(conf: dict) -> tuple[ModelConfig, int, int]:
    if conf.get("asm"):
        raise XLMError("config.json: asm=true (adaptive softmax) is not supported")
    if conf.get("is_encoder") is False:
        raise XLMError("config.json: is_encoder=false (decoder) is not supported")
    n_words = conf.get("vocab_size", conf.get("n_words"))
    if n_words is None:
        raise XLMError("config.json: neither 'vocab_size' nor 'n_words' is set")
    try:
        cfg = ModelConfig(
            emb_dim=int(conf.get("emb_dim", 2048)),
            n_layers=int(conf.get("n_layers", 12)),
            n_heads=int(conf.get("n_heads", 16)),
            dropout=float(conf.get("dropout", 0.1)),
            attention_dropout=float(conf.get("attention_dropout", 0.1)),
            gelu_activation=bool(conf.get("gelu_activation", True)),
            sinusoidal_embeddings=bool(conf.get("sinusoidal_embeddings", False)),
            use_lang_emb=bool(conf.get("use_lang_emb", True)),
            share_inout_emb=bool(conf.get("tie_word_embeddings", conf.get("share_inout_emb", True))),
            max_positions=int(conf.get("max_position_embeddings", 512)),
        )
        cfg.validate("config.json")
    except (TypeError, ValueError) as e:
        raise XLMError(f"config.json: {e}") from None
    eps = float(conf.get("layer_norm_eps", 1e-12))
    if abs(eps - 1e-12) > 1e-15:
        raise XLMError(f"config.json: layer_norm_eps={eps} is not supported (XLM uses 1e-12)")
    return cfg, int(n_words), int(conf.get("n_langs", 1))


def hf_config(cfg: ModelConfig, n_words: int, lang2id: dict[str, int], causal: bool) -> dict:
    if cfg.pre_norm:
        raise XLMError("model.pre_norm: Hugging Face XLM is post-norm only; a pre-norm model cannot be exported to it")
    return {
        "architectures": ["XLMWithLMHeadModel"],
        "model_type": "xlm",
        "vocab_size": n_words,
        "emb_dim": cfg.emb_dim,
        "n_layers": cfg.n_layers,
        "n_heads": cfg.n_heads,
        "dropout": cfg.dropout,
        "attention_dropout": cfg.attention_dropout,
        "gelu_activation": cfg.gelu_activation,
        "sinusoidal_embeddings": cfg.sinusoidal_embeddings,
        "causal": causal,
        "asm": False,
        "n_langs": max(1, len(lang2id)),
        "use_lang_emb": cfg.use_lang_emb,
        "max_position_embeddings": cfg.max_positions,
        "embed_init_std": cfg.emb_dim**-0.5,
        "layer_norm_eps": 1e-12,
        "init_std": 0.02,
        "bos_index": 0,
        "eos_index": 1,
        "pad_index": 2,
        "unk_index": 3,
        "mask_index": 5,
        # generate() reads these: sentences start and end with </s> in the original's batches; the
        # token generate() appends to predict is mask_token_id (the MLM mask); lang_id fills `langs`
        "bos_token_id": 1,
        "eos_token_id": 1,
        "pad_token_id": 2,
        "mask_token_id": 5,
        "lang_id": min(lang2id.values(), default=0),
        "is_encoder": True,
        "tie_word_embeddings": cfg.share_inout_emb,
        "lang2id": dict(lang2id),
        "id2lang": {str(i): lang for lang, i in lang2id.items()},
        "xlm": {"causal": causal, "model_config": dataclasses.asdict(cfg)},
    }


def hf_vocab(d: Dictionary) -> dict[str, int]:
    """HF token strings: ``hel@@`` -> ``hel``, final piece ``lo`` -> ``lo</w>``; specials unchanged."""
    out = {}
    for i, w in enumerate(d.id2word):
        if i < N_SPECIAL:
            out[w] = i
        else:
            out[w[: -len(BPE_CONT)] if w.endswith(BPE_CONT) else w + BPE_EOW] = i
    return out


def dictionary_from_hf_vocab(vocab: dict[str, int], source: str = "vocab.json") -> Dictionary:
    id2word: dict[int, str] = {}
    for tok, i in vocab.items():
        if not isinstance(i, int) or i in id2word:
            raise XLMError(f"{source}: token {tok!r} has an invalid or duplicate id {i!r}")
        id2word[i] = tok
    for i, w in enumerate(SPECIAL_WORDS):
        if id2word.get(i) != w:
            raise XLMError(f"{source}: missing special token {w!r} at id {i} (found {id2word.get(i)!r})")
    if sorted(id2word) != list(range(len(id2word))):
        raise XLMError(f"{source}: ids are not contiguous from 0")
    words = []
    for i in range(N_SPECIAL, len(id2word)):
        w = id2word[i]
        words.append(w[: -len(BPE_EOW)] if w.endswith(BPE_EOW) else w + BPE_CONT)
    return Dictionary(words)


def codes_from_merges(text: str, source: str = "merges.txt") -> str:
    """HF ``merges.txt`` (``left right`` or ``left right count``) -> fastBPE codes text (3 fields)."""
    lines = []
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line or line.startswith("#version"):
            continue
        parts = line.split(" ")
        if len(parts) == 2:
            parts.append("0")  # counts are ignored when applying; fastBPE wants the column
        if len(parts) != 3:
            raise XLMError(f"{source}:{lineno}: expected 'LEFT RIGHT [COUNT]'")
        lines.append(" ".join(parts))
    return "\n".join(lines) + ("\n" if lines else "")


def hf_tokenizer_config(lang2id: dict[str, int], lowercase: bool, max_len: int) -> dict:
    return {
        "tokenizer_class": "XLMTokenizer",
        "bos_token": "</s>",  # frames a sentence </s> ... </s> as the original's batches (HF's default: <s>)
        "do_lowercase_and_remove_accent": lowercase,
        "model_max_length": max_len,
        "lang2id": dict(lang2id),
        "id2lang": {str(i): lang for lang, i in lang2id.items()},
    }


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n"
