"""Hugging Face ``xlm-roberta`` (``XLMRobertaForMaskedLM``) checkpoints: key map, config, vocabulary.

XLM-R (Conneau et al., 2020) is XLM's post-norm encoder with RoBERTa's details, each a
:class:`~xlm.config.ModelConfig` option: positions read from row ``pad + 1`` on
(``position_offset``, fairseq's ``make_positions``), no language embeddings, one token-type row
added to every token (``n_token_types``), the LM head's dense + gelu + LayerNorm transform
(``lm_head_transform``), LayerNorm eps 1e-5, and its own special ids (``<s>`` 0, ``<pad>`` 1,
``</s>`` 2, ``<unk>`` 3, ``<mask>`` last: :meth:`xlm.data.dictionary.Dictionary.xlmr`).
Parameter names follow ``transformers/models/xlm_roberta/modeling_xlm_roberta.py`` (5.x). This
module works on plain dicts and tensors; folders are read and written in :mod:`xlm.hf_folder`.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor

from xlm.config import ModelConfig
from xlm.data.dictionary import Dictionary
from xlm.errors import XLMError, warn

MODEL_TYPE = "xlm-roberta"
_LAYER = {  # HF name inside encoder.layer.{i} -> ours with {i}
    "attention.self.query": "attentions.{i}.q_lin",
    "attention.self.key": "attentions.{i}.k_lin",
    "attention.self.value": "attentions.{i}.v_lin",
    "attention.output.dense": "attentions.{i}.out_lin",
    "attention.output.LayerNorm": "layer_norm1.{i}",
    "intermediate.dense": "ffns.{i}.lin1",
    "output.dense": "ffns.{i}.lin2",
    "output.LayerNorm": "layer_norm2.{i}",
}
_FIXED = {
    "embeddings.word_embeddings.weight": "embeddings.weight",
    "embeddings.position_embeddings.weight": "position_embeddings.weight",
    "embeddings.token_type_embeddings.weight": "token_type_embeddings.weight",
    "embeddings.LayerNorm.weight": "layer_norm_emb.weight",
    "embeddings.LayerNorm.bias": "layer_norm_emb.bias",
}
_HEAD = {
    "lm_head.dense.weight": "pred_layer.dense.weight",
    "lm_head.dense.bias": "pred_layer.dense.bias",
    "lm_head.layer_norm.weight": "pred_layer.layer_norm.weight",
    "lm_head.layer_norm.bias": "pred_layer.layer_norm.bias",
    "lm_head.decoder.weight": "pred_layer.proj.weight",
    "lm_head.bias": "pred_layer.proj.bias",
}
_LAYER_KEY = re.compile(r"encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$")


def is_xlmr(cfg: ModelConfig) -> bool:
    """Whether the model has XLM-R's architecture options (then it exports as ``xlm-roberta``, not ``xlm``)."""
    return cfg.lm_head_transform or cfg.n_token_types > 0 or cfg.position_offset > 0


def model_config_from_xlmr(conf: dict, where: str = "config.json") -> tuple[ModelConfig, int]:
    """``XLMRobertaConfig`` (as a dict) -> our config and the vocabulary size; what we cannot compute is refused."""
    if conf.get("is_decoder"):
        raise XLMError(f"{where}: is_decoder=true (a causal XLM-R) is not supported")
    if conf.get("position_embedding_type", "absolute") != "absolute":
        raise XLMError(f"{where}: position_embedding_type={conf['position_embedding_type']!r} is not supported "
                       "(absolute only)")
    act = conf.get("hidden_act", "gelu")
    if act not in ("gelu", "relu"):
        raise XLMError(f"{where}: hidden_act={act!r} is not supported (gelu or relu)")
    try:
        dim = int(conf["hidden_size"])
        pad = int(conf.get("pad_token_id", 1))
        ffn = int(conf.get("intermediate_size", 4 * dim))
        cfg = ModelConfig(
            emb_dim=dim,
            n_layers=int(conf["num_hidden_layers"]),
            n_heads=int(conf["num_attention_heads"]),
            dropout=float(conf.get("hidden_dropout_prob", 0.1)),
            attention_dropout=float(conf.get("attention_probs_dropout_prob", 0.1)),
            gelu_activation=act == "gelu",
            sinusoidal_embeddings=False,
            use_lang_emb=False,
            share_inout_emb=bool(conf.get("tie_word_embeddings", True)),
            max_positions=int(conf.get("max_position_embeddings", 514)),
            ffn_dim=0 if ffn == 4 * dim else ffn,
            layer_norm_eps=float(conf.get("layer_norm_eps", 1e-5)),
            position_offset=pad + 1,  # fairseq/HF: real tokens take positions pad+1, pad+2, ...
            n_token_types=int(conf.get("type_vocab_size", 1)),
            lm_head_transform=True,
            pad_index=pad,
        )
        cfg.validate(where)
        n_words = int(conf["vocab_size"])
    except KeyError as e:
        raise XLMError(f"{where}: missing {e.args[0]!r}") from None
    except (TypeError, ValueError) as e:
        raise XLMError(f"{where}: {e}") from None
    return cfg, n_words


def xlmr_config(cfg: ModelConfig, n_words: int, dictionary: Dictionary | None) -> dict:
    """The ``config.json`` of ``XLMRobertaForMaskedLM``; a model it cannot represent exactly is refused."""
    d = dictionary
    pad = d.pad_index if d is not None else cfg.pad_index
    wrong = [(k, want) for k, want in (("pre_norm", False), ("sinusoidal_embeddings", False), ("use_lang_emb", False),
                                        ("lm_head_transform", True), ("position_offset", pad + 1))
             if getattr(cfg, k) != want]
    if cfg.n_token_types < 1:
        wrong.append(("n_token_types", ">= 1"))
    if wrong:
        k, want = wrong[0]
        raise XLMError(f"model.{k}: {getattr(cfg, k)} cannot be exported as xlm-roberta (needs {want})")
    return {
        "architectures": ["XLMRobertaForMaskedLM"],
        "model_type": MODEL_TYPE,
        "vocab_size": n_words,
        "hidden_size": cfg.emb_dim,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "intermediate_size": cfg.ffn_dim or 4 * cfg.emb_dim,
        "hidden_act": "gelu" if cfg.gelu_activation else "relu",
        "hidden_dropout_prob": cfg.dropout,
        "attention_probs_dropout_prob": cfg.attention_dropout,
        "max_position_embeddings": cfg.max_positions,
        "type_vocab_size": cfg.n_token_types,
        "layer_norm_eps": cfg.layer_norm_eps,
        "initializer_range": 0.02,
        "position_embedding_type": "absolute",
        "is_decoder": False,
        "tie_word_embeddings": cfg.share_inout_emb,
        "pad_token_id": pad,
        "bos_token_id": d.bos_index if d is not None else 0,
        "eos_token_id": d.eos_index if d is not None else 2,
    }


def xlmr_state_to_ours(state: dict[str, Tensor], where: str = "model") -> dict[str, Tensor]:
    """HF keys (``roberta.`` prefix or none) -> ours. The pooler (not used by the MLM) is dropped with a warning."""
    out: dict[str, Tensor] = {}
    pooler = False
    for key, v in state.items():
        k = key[len("roberta."):] if key.startswith("roberta.") else key
        if k in _HEAD:
            out[_HEAD[k]] = v
        elif k == "lm_head.decoder.bias":
            out.setdefault("pred_layer.proj.bias", v)  # older versions save the tied bias twice
        elif k in _FIXED:
            out[_FIXED[k]] = v
        elif k.endswith(("position_ids", "token_type_ids")):
            continue  # buffers some versions save
        elif k.startswith("pooler."):
            pooler = True
        elif (m := _LAYER_KEY.match(k)) and m.group(2) in _LAYER:
            out[_LAYER[m.group(2)].format(i=m.group(1)) + "." + m.group(3)] = v
        else:
            raise XLMError(f"{where}: unexpected parameter {key!r} in an xlm-roberta checkpoint")
    if pooler:
        warn(f"{where}: dropped the pooler (roberta.pooler.*): the masked LM does not use it")
    return out


def ours_to_xlmr_state(state: dict[str, Tensor], tied: bool) -> dict[str, Tensor]:
    """Ours -> ``XLMRobertaForMaskedLM`` keys; a tied decoder weight is left out, as ``save_pretrained`` does."""
    inverse = {v: k for k, v in {**_FIXED, **_HEAD}.items()}
    layer = {v.replace(".{i}", ""): k for k, v in _LAYER.items()}
    out = {}
    for k, v in state.items():
        if k == "pred_layer.proj.weight" and tied:
            continue
        if k in inverse:
            name = inverse[k]
            name = name if name.startswith("lm_head.") else "roberta." + name
        else:
            m = re.match(r"(attentions|layer_norm1|layer_norm2|ffns)\.(\d+)\.(?:(\w+)\.)?(weight|bias)$", k)
            if m is None:
                raise XLMError(f"parameter {k!r} has no place in an xlm-roberta checkpoint")
            base = m.group(1) + (f".{m.group(3)}" if m.group(3) else "")
            name = f"roberta.encoder.layer.{m.group(2)}.{layer[base]}.{m.group(4)}"
        out[name] = v.detach().contiguous()
    return out


# -- vocabulary ---------------------------------------------------------------------------------
def dictionary_from_spm(sp, where: str = "sentencepiece.bpe.model") -> Dictionary:  # noqa: ANN001
    """fairseq's mapping of XLM-R's SentencePiece model: piece ``i >= 3`` gets id ``i + 1``, ``<mask>`` last.

    Source: ``XLMRobertaTokenizer`` (transformers 4.x): ``fairseq_offset = 1``, SentencePiece's
    ``<unk>`` 0, ``<s>`` 1, ``</s>`` 2 replaced by fairseq's ``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3.
    """
    heads = [sp.id_to_piece(i) for i in range(min(3, sp.get_piece_size()))]
    if heads != ["<unk>", "<s>", "</s>"]:
        raise XLMError(f"{where}: the first pieces are {heads}, not XLM-R's ['<unk>', '<s>', '</s>']")
    return Dictionary.xlmr([sp.id_to_piece(i) for i in range(3, sp.get_piece_size())])


def dictionary_from_tokenizer_json(data: dict, where: str = "tokenizer.json") -> Dictionary:
    """The ids of a Unigram ``tokenizer.json`` (what ``XLMRobertaTokenizer`` 5.x saves), in XLM-R's layout."""
    model = data.get("model") or {}
    vocab = model.get("vocab")
    if model.get("type") != "Unigram" or not isinstance(vocab, list):
        raise XLMError(f"{where}: expected a Unigram model with a vocab list (XLMRobertaTokenizer)")
    pieces = [str(v[0]) for v in vocab]
    if len(pieces) < 5 or pieces[:4] != ["<s>", "<pad>", "</s>", "<unk>"] or pieces[-1] != "<mask>":
        raise XLMError(f"{where}: not XLM-R's layout (<s> <pad> </s> <unk> ... <mask>): {pieces[:4]} ... {pieces[-1:]}")
    return Dictionary.xlmr(pieces[4:-1])


@torch.no_grad()
def to_xlmr_layout(state: dict[str, Tensor], dictionary: Dictionary) -> tuple[dict[str, Tensor], Dictionary]:
    """Move the word rows of a model with XLM's vocabulary layout into XLM-R's (for export).

    The real words keep their order; the special rows move by role (``<special1>``, XLM's mask,
    becomes ``<mask>``); XLM's other ``<special*>`` rows are dropped: an XLM-R vocabulary has no place for them.
    """
    if dictionary.layout == "xlmr":
        return state, dictionary
    target = Dictionary.xlmr(dictionary.real_words(), dictionary.counts[dictionary.n_special:])
    rows = [dictionary.specials()[role] for role in ("bos", "pad", "eos", "unk")]
    rows += list(range(dictionary.n_special, len(dictionary))) + [dictionary.mask_index]
    index = torch.tensor(rows)
    out = dict(state)
    for k in ("embeddings.weight", "pred_layer.proj.weight", "pred_layer.proj.bias"):
        if k in out:
            out[k] = out[k][index].clone()
    return out, target


# -- ERNIE-M ------------------------------------------------------------------------------------
# transformers 5.x no longer ships ernie_m; the layout is that of its last version
# (models/deprecated/ernie_m/modeling_ernie_m.py, 4.x): ErnieMModel, an encoder without an MLM head.
ERNIE_M_TYPE = "ernie_m"
_ERNIE_M_FIXED = {
    "embeddings.word_embeddings.weight": "embeddings.weight",
    "embeddings.position_embeddings.weight": "position_embeddings.weight",
    "embeddings.layer_norm.weight": "layer_norm_emb.weight",
    "embeddings.layer_norm.bias": "layer_norm_emb.bias",
}
_ERNIE_M_LAYER = {
    "self_attn.self_attn.q_proj": "attentions.{i}.q_lin",
    "self_attn.self_attn.k_proj": "attentions.{i}.k_lin",
    "self_attn.self_attn.v_proj": "attentions.{i}.v_lin",
    "self_attn.out_proj": "attentions.{i}.out_lin",
    "norm1": "layer_norm1.{i}",
    "linear1": "ffns.{i}.lin1",
    "linear2": "ffns.{i}.lin2",
    "norm2": "layer_norm2.{i}",
}
_ERNIE_M_LAYER_KEY = re.compile(r"encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$")


def model_config_from_ernie_m(conf: dict, where: str = "config.json") -> tuple[ModelConfig, int]:
    """``ErnieMConfig`` -> ours: XLM-R's encoder without token types, positions ``i + 2`` for every token
    (``ErnieMEmbeddings``: "to mimic paddlenlp"), and a plain tied output layer (ERNIE-M ships no MLM head)."""
    act = conf.get("hidden_act", "gelu")
    if act not in ("gelu", "relu"):
        raise XLMError(f"{where}: hidden_act={act!r} is not supported (gelu or relu)")
    act_dropout = conf.get("act_dropout", 0.0)
    act_dropout = conf.get("hidden_dropout_prob", 0.1) if act_dropout is None else act_dropout  # as ErnieMEncoderLayer
    if float(act_dropout) > 0:
        warn(f"{where}: act_dropout={act_dropout} (after the activation) is not applied in training: xlm's FFN has "
             "one dropout, after its second layer")
    try:
        dim = int(conf.get("hidden_size", 768))
        ffn = int(conf.get("intermediate_size", 3072))
        cfg = ModelConfig(
            emb_dim=dim, n_layers=int(conf.get("num_hidden_layers", 12)),
            n_heads=int(conf.get("num_attention_heads", 12)),
            dropout=float(conf.get("hidden_dropout_prob", 0.1)),
            attention_dropout=float(conf.get("attention_probs_dropout_prob", 0.1)),
            gelu_activation=act == "gelu", use_lang_emb=False, share_inout_emb=True,
            max_positions=int(conf.get("max_position_embeddings", 514)), ffn_dim=0 if ffn == 4 * dim else ffn,
            layer_norm_eps=float(conf.get("layer_norm_eps", 1e-5)), position_offset=2,
            pad_index=int(conf.get("pad_token_id", 1)),
        )
        cfg.validate(where)
        n_words = int(conf.get("vocab_size", 250002))
    except (TypeError, ValueError) as e:
        raise XLMError(f"{where}: {e}") from None
    return cfg, n_words


def ernie_m_state_to_ours(state: dict[str, Tensor], where: str = "model") -> dict[str, Tensor]:
    """``ErnieMModel`` keys (``ernie_m.`` prefix or none) -> ours; the pooler and task heads are dropped (warned)."""
    out: dict[str, Tensor] = {}
    dropped = []
    for key, v in state.items():
        k = key[len("ernie_m."):] if key.startswith("ernie_m.") else key
        if k in _ERNIE_M_FIXED:
            out[_ERNIE_M_FIXED[k]] = v
        elif (m := _ERNIE_M_LAYER_KEY.match(k)) and m.group(2) in _ERNIE_M_LAYER:
            out[_ERNIE_M_LAYER[m.group(2)].format(i=m.group(1)) + "." + m.group(3)] = v
        elif k.startswith(("pooler.", "classifier.", "qa_outputs.", "linear_start.", "linear_end.")):
            dropped.append(key)
        else:
            raise XLMError(f"{where}: unexpected parameter {key!r} in an ernie_m checkpoint")
    if dropped:
        warn(f"{where}: dropped {len(dropped)} parameters of the pooler and task heads ({dropped[0]}, ...)")
    return out
