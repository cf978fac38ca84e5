"""Typed run configuration: dataclasses loaded strictly from YAML, with dotted command-line overrides.

Strict means: an unknown key is an error naming its dotted path and the valid keys; a value of the
wrong type, or one that breaks an invariant, is an error naming the key. The resolved config is a
plain dict (:func:`to_dict`) that is written next to every run and embedded in every checkpoint.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from xlm.errors import XLMError


@dataclass
class ModelConfig:
    """Architecture of :class:`xlm.model.TransformerModel` (vocabulary and languages come from the data)."""

    emb_dim: int = 512
    n_layers: int = 4
    n_heads: int = 8
    dropout: float = 0.1
    attention_dropout: float = 0.1
    gelu_activation: bool = True
    sinusoidal_embeddings: bool = False
    use_lang_emb: bool = True
    share_inout_emb: bool = True
    max_positions: int = 512
    pre_norm: bool = False
    # false: an encoder-decoder translation model (xlm.model.decoder), the original's --encoder_only false
    encoder_only: bool = True
    # XLM-R / RoBERTa architecture options (see docs/interop.md); the defaults are XLM's
    ffn_dim: int = 0  # hidden size of the feed-forward layers; 0: 4 * emb_dim (XLM, XLM-R)
    layer_norm_eps: float = 1e-12  # XLM 1e-12, XLM-R 1e-5
    position_offset: int = 0  # first position row used; XLM-R: pad id + 1 = 2 (fairseq's make_positions)
    n_token_types: int = 0  # token-type (segment) embeddings, row 0 added to every token; XLM-R: 1
    lm_head_transform: bool = False  # dense + gelu + LayerNorm before the output projection (XLM-R's lm_head)
    pad_index: int = 2  # id of <pad> in the model's vocabulary: XLM 2, XLM-R 1
    # recompute each layer's activations in backward (less memory, ~1/3 more compute); a training
    # setting: it changes no result (same dropout masks) and may be switched on resume
    checkpoint_activations: bool = False

    def validate(self, prefix: str = "model") -> None:
        _positive(self, prefix, "emb_dim", "n_layers", "n_heads", "max_positions")
        if self.ffn_dim < 0 or self.position_offset < 0 or self.n_token_types < 0 or self.pad_index < 0:
            raise XLMError(f"{prefix}.ffn_dim/position_offset/n_token_types/pad_index: must be >= 0")
        if self.position_offset >= self.max_positions:
            raise XLMError(f"{prefix}.position_offset: {self.position_offset} leaves no position of "
                           f"{prefix}.max_positions={self.max_positions}")
        if not 0 < self.layer_norm_eps < 1:
            raise XLMError(f"{prefix}.layer_norm_eps: must be in (0, 1), got {self.layer_norm_eps}")
        if self.emb_dim % self.n_heads:
            raise XLMError(f"{prefix}.emb_dim: {self.emb_dim} is not a multiple of {prefix}.n_heads ({self.n_heads})")
        _probability(self, prefix, "dropout", "attention_dropout")


@dataclass
class RunConfig:
    dir: str = "runs/default"
    seed: int = 0
    log_every: int = 10
    tensorboard: bool = True
    debug: bool = False

    def validate(self, prefix: str = "run") -> None:
        _positive(self, prefix, "log_every")


@dataclass
class DataConfig:
    path: str = ""
    langs: list[str] = field(default_factory=list)
    max_vocab: int = -1
    min_count: int = 0
    bptt: int = 256
    batch_size: int = 32
    tokens_per_batch: int = -1
    max_batch_size: int = 0
    max_len: int = 100
    group_by_size: bool = True
    pack: bool = False  # training: pack TLM pairs into rows of bptt tokens, block-diagonal attention (xlm.data.packing)
    lg_sampling_factor: float = -1.0
    # how the folder's raw text was prepared, for folders without preprocess.json (see xlm.data.provenance),
    # e.g. {tokenize: true, lower_remove_accent: true}; checkpoints record it so that encode() redoes it
    preprocess: dict[str, Any] = field(default_factory=dict)

    def validate(self, prefix: str = "data") -> None:
        _positive(self, prefix, "bptt", "batch_size")
        if self.langs != sorted(set(self.langs)):
            raise XLMError(f"{prefix}.langs: must be sorted and unique (language ids are indices "
                           f"in the sorted list), got {self.langs}")
        if self.tokens_per_batch != -1 and self.tokens_per_batch <= 0:
            raise XLMError(f"{prefix}.tokens_per_batch: must be -1 (off) or positive, got {self.tokens_per_batch}")
        if self.lg_sampling_factor != -1 and self.lg_sampling_factor < 0:
            raise XLMError(f"{prefix}.lg_sampling_factor: must be -1 (uniform) or >= 0")
        if self.max_len < 0 or self.min_count < 0:
            raise XLMError(f"{prefix}.max_len/min_count: must be >= 0")


# The objectives' config keys, in registry order (xlm.objectives.registry.OBJECTIVES checks it matches).
OBJECTIVE_KEYS = ("clm", "mlm", "camlm", "btmlm", "ae", "mt", "bt")


@dataclass
class ObjectivesConfig:
    """Which objectives run on which languages, as the original's ``--mlm_steps``/``--clm_steps``.

    ``mlm: [en, fr, en-fr]`` is MLM on English and French streams plus TLM on en-fr pairs;
    ``camlm: [en-fr]`` ERNIE-M's cross-attention MLM on pairs; ``btmlm: [en>fr]`` its
    back-translation MLM on English sentences with French pseudo tokens (xlm.objectives.registry
    lists the objectives; each has a task list ``<name>`` and a weight ``lambda_<name>``).
    Lambdas are a constant (``"1"``) or a piecewise-linear schedule ``"step0:v0,step1:v1,..."``.
    """

    mlm: list[str] = field(default_factory=list)
    clm: list[str] = field(default_factory=list)
    camlm: list[str] = field(default_factory=list)
    btmlm: list[str] = field(default_factory=list)
    # translation (model.encoder_only: false): denoising auto-encoding on languages, supervised directions,
    # online back-translation round trips, as the original's --ae_steps en --mt_steps en-fr --bt_steps en-fr-en
    ae: list[str] = field(default_factory=list)
    mt: list[str] = field(default_factory=list)
    bt: list[str] = field(default_factory=list)
    lambda_mlm: str = "1"
    lambda_clm: str = "1"
    lambda_camlm: str = "1"
    lambda_btmlm: str = "1"
    lambda_ae: str = "1"
    lambda_mt: str = "1"
    lambda_bt: str = "1"
    # the AE input noise (xlm.noise; the original's --word_shuffle/--word_dropout/--word_blank, default 0;
    # its unsupervised MT recipe uses 3, 0.1, 0.1)
    word_shuffle: float = 0.0
    word_dropout: float = 0.0
    word_blank: float = 0.0
    btmlm_k: int = 0  # pseudo tokens per sentence; 0: as many as the sentence has (xlm.objectives.btmlm)
    btmlm_generation: Literal["argmax", "sample"] = "argmax"
    word_pred: float = 0.15
    sample_alpha: float = 0.0
    word_mask_keep_rand: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    context_size: int = 0
    # "original": the original trainer's mask_out (any token but padding and position 0 may be a target,
    # random replacements drawn from the whole vocabulary); see xlm.objectives.Masker
    mlm_targets: Literal["xlm", "original"] = "xlm"

    def validate(self, prefix: str = "objectives") -> None:
        if not 0 < self.word_pred < 1:  # 0 would leave nothing to predict
            raise XLMError(f"{prefix}.word_pred: must be in (0, 1), got {self.word_pred}")
        if not 0 <= self.sample_alpha < 1:
            raise XLMError(f"{prefix}.sample_alpha: must be in [0, 1), got {self.sample_alpha}")
        p = self.word_mask_keep_rand
        if len(p) != 3 or any(not 0 <= x <= 1 for x in p) or abs(sum(p) - 1) > 1e-6:
            raise XLMError(f"{prefix}.word_mask_keep_rand: three probabilities in [0, 1] summing to 1, got {p}")
        if self.word_shuffle != 0 and self.word_shuffle <= 1:
            raise XLMError(f"{prefix}.word_shuffle: must be 0 (off) or > 1, got {self.word_shuffle}")
        _probability(self, prefix, "word_dropout", "word_blank")
        noise = [k for k in ("word_shuffle", "word_dropout", "word_blank") if getattr(self, k)]
        if noise and not self.ae:  # as the original: noise is the auto-encoder's input only
            raise XLMError(f"{prefix}.{noise[0]}: only used by {prefix}.ae (denoising auto-encoding), which is empty")
        if self.btmlm_k < 0:
            raise XLMError(f"{prefix}.btmlm_k: must be >= 0 (0: as many pseudo tokens as the sentence), "
                           f"got {self.btmlm_k}")
        for name in OBJECTIVE_KEYS:
            try:
                parse_schedule(getattr(self, f"lambda_{name}"))
            except ValueError as e:
                raise XLMError(f"{prefix}.lambda_{name}: {e}") from None
            steps = getattr(self, name)
            if len(steps) != len(set(steps)):
                raise XLMError(f"{prefix}.{name}: duplicate entries in {steps}")


@dataclass
class OptimConfig:
    optimizer: Literal["adamw", "adam"] = "adamw"
    lr: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-6
    weight_decay: float = 0.01
    schedule: Literal["inverse_sqrt", "linear", "cosine", "constant"] = "inverse_sqrt"
    warmup_updates: int = 4000
    warmup_init_lr: float = 1e-7
    min_lr: float = 0.0
    exp_factor: float = 0.5
    clip_grad_norm: float = 5.0
    # AdamW kernel: "fused" (one kernel, updates skipped on the device), "foreach", "auto": fused on CUDA
    implementation: Literal["auto", "fused", "foreach"] = "auto"

    def validate(self, prefix: str = "optim") -> None:
        _positive(self, prefix, "lr")
        _probability(self, prefix, "beta1", "beta2")
        for name in ("eps", "weight_decay", "warmup_updates", "warmup_init_lr", "min_lr", "clip_grad_norm",
                     "exp_factor"):
            if getattr(self, name) < 0:
                raise XLMError(f"{prefix}.{name}: must be >= 0, got {getattr(self, name)}")


@dataclass
class TrainConfig:
    max_steps: int = 100000
    eval_every: int = 1000
    save_every: int = 1000
    keep_last: int = 2
    accumulate_gradients: int = 1
    validation_metric: str = "_valid_mlm_ppl"
    early_stopping_patience: int = 0
    eval_max_sentences: int = -1
    eval_at_start: bool = True
    eval_only: bool = False  # evaluate the run's newest checkpoint (else init.from, else the initial model), exit
    # "auto": bf16 on Ampere and newer GPUs, fp16 (+ loss scaler) on Volta/Turing, fp32 on CPU (xlm.precision)
    precision: Literal["fp32", "fp16", "bf16", "auto"] = "fp32"
    compile: bool = False  # torch.compile the model and its loss (no graph breaks; see docs/performance.md)
    compile_backend: str = "inductor"  # torch.compile backend ("aot_eager", "eager": for debugging and tests)
    # "layers": one compiled layer reused by every layer, plus the output loss (regional compilation, fast to
    # compile); "model": the whole model and its loss as one graph; "auto": layers, but model under FSDP2
    # (whose hooks cannot run inside a compiled layer) and for encoder-decoders (xlm.train.compile)
    compile_scope: Literal["auto", "layers", "model"] = "auto"
    prefetch: int = 2  # steps of batches built ahead in a background thread (0: built in the step itself)
    parallelism: Literal["ddp", "fsdp"] = "ddp"
    nan_tolerance: int = 5
    peak_tflops: float = 0.0  # per-device peak for MFU; 0: known GPUs from a table, otherwise MFU is not logged
    eval_protocol: Literal["xlm", "original"] = "xlm"  # "original": facebookresearch/XLM's figures (xlm.eval_original)
    # translation: {split}_{l1}-{l2}_mt_bleu (tokenized BLEU of BPE-removed output, as the original's
    # multi-bleu.perl) for every evaluated direction; decoding as the original's --beam_size etc.
    eval_bleu: bool = False
    beam_size: int = 1
    length_penalty: float = 1.0
    early_stopping: bool = False

    def validate(self, prefix: str = "train") -> None:
        _positive(self, prefix, "max_steps", "eval_every", "save_every", "accumulate_gradients")
        if self.prefetch < 0:
            raise XLMError(f"{prefix}.prefetch: must be >= 0, got {self.prefetch}")
        if self.keep_last < 1:
            raise XLMError(f"{prefix}.keep_last: must be >= 1, got {self.keep_last}")
        if self.eval_max_sentences == 0 or self.eval_max_sentences < -1:
            raise XLMError(f"{prefix}.eval_max_sentences: must be -1 (all) or positive, got {self.eval_max_sentences} "
                           "(0 would leave nothing to evaluate)")
        _positive(self, prefix, "beam_size")
        if self.eval_protocol == "original" and self.eval_max_sentences != -1:
            raise XLMError(f"{prefix}.eval_max_sentences: the original protocol evaluates whole splits; "
                           f"set it to -1 or use {prefix}.eval_protocol: xlm")


@dataclass
class InitConfig:
    """Weights a *new* run starts from: the original's ``--reload_model`` and ``--reload_emb``.

    ``from`` is any model :func:`xlm.load_pretrained` reads (our checkpoint or run folder, an original
    ``.pth``, a Hugging Face folder). Embedding rows are mapped by word and language code, so the new
    run may have another vocabulary or more languages (see :mod:`xlm.initialize`). A run folder that
    already holds a checkpoint resumes from it instead: a requeued job must continue, not restart.
    """

    from_: str = field(default="", metadata={"key": "from"})
    strict: bool = True  # every parameter of the new model must come from `from`, with its shape
    emb: str = ""  # fastText-format word vectors (.vec text: "n dim" header, then "word v1 .. vdim")
    # encoder-decoder models (model.encoder_only: false): the model each side starts from (default: `from`);
    # the decoder's cross-attention is new (the paper's initialization, Lample & Conneau 2019 section 5.2)
    encoder: str = ""
    decoder: str = ""

    @property
    def requested(self) -> bool:
        """Whether the run starts from anything: ``from``, ``emb``, ``encoder`` or ``decoder`` set."""
        return bool(self.from_ or self.emb or self.encoder or self.decoder)


@dataclass
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objectives: ObjectivesConfig = field(default_factory=ObjectivesConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    init: InitConfig = field(default_factory=InitConfig)

    def validate(self, prefix: str = "") -> None:
        for f in dataclasses.fields(self):
            section = getattr(self, f.name)
            if hasattr(section, "validate"):
                section.validate(f.name)
        langs = set(self.data.langs)
        from xlm.objectives.registry import OBJECTIVES  # (the registry imports this module)

        for obj, spec in OBJECTIVES.items():
            for step in getattr(self.objectives, obj):
                problem = entry_problem(step, spec.entries, spec.separator)
                if problem:
                    raise XLMError(f"objectives.{obj}: {step!r} {problem}")
                for lang in step.split(spec.separator):
                    if lang not in langs:
                        raise XLMError(f"objectives.{obj}: language {lang!r} (in {step!r}) is not in "
                                       f"data.langs {self.data.langs}")
            if getattr(self.objectives, obj) and spec.decoder and self.model.encoder_only:
                raise XLMError(f"objectives.{obj}: trains a decoder; set model.encoder_only: false")
            if getattr(self.objectives, obj) and not self.model.encoder_only and not spec.encoder_decoder:
                raise XLMError(f"objectives.{obj}: not with an encoder-decoder (model.encoder_only: false); "
                               "it runs on encoder-only models")
            if getattr(self.objectives, obj) and self.train.eval_protocol == "original" \
                    and not spec.original_protocol:
                raise XLMError(f"objectives.{obj}: train.eval_protocol 'original' evaluates only the original's "
                               "objectives (mlm, clm); use train.eval_protocol: xlm")
        usable = self.model.max_positions - self.model.position_offset
        if self.objectives.btmlm_k > usable - 2 and self.objectives.btmlm:
            offset = f" - model.position_offset ({self.model.position_offset})" if self.model.position_offset else ""
            raise XLMError(f"objectives.btmlm_k: {self.objectives.btmlm_k} pseudo tokens exceed model.max_positions "
                           f"({self.model.max_positions}) - 2{offset}")
        if usable < self.data.bptt and (self.objectives.mlm or self.objectives.clm):
            raise XLMError(f"data.bptt: {self.data.bptt} exceeds model.max_positions ({self.model.max_positions})"
                           + (f" less model.position_offset ({self.model.position_offset})"
                              if self.model.position_offset else ""))
        if (self.init.encoder or self.init.decoder) and self.model.encoder_only:
            raise XLMError("init.encoder/init.decoder: only for an encoder-decoder (model.encoder_only: false)")
        if not self.model.encoder_only:
            if self.train.parallelism == "fsdp" and (self.objectives.bt or self.train.eval_bleu):
                key = "objectives.bt" if self.objectives.bt else "train.eval_bleu"
                raise XLMError(f"{key}: decoding runs outside the sharded forward, so not with "
                               "train.parallelism: fsdp; use ddp")
            if self.data.pack:
                raise XLMError("data.pack: packs TLM pairs of encoder-only models; set it false for "
                               "model.encoder_only: false")
        if self.train.eval_bleu and not (self.objectives.mt or self.objectives.bt):
            raise XLMError("train.eval_bleu: needs objectives.mt or objectives.bt (the directions it evaluates)")


def entry_problem(entry: str, form: str, sep: str) -> str:
    """Why ``entry`` is not of ``form`` (an objective's ``entries``), or ``""``: ``"lang"`` (``en``),
    ``"pair"`` (``en-fr``), ``"both"`` (either), ``"roundtrip"`` (``en-fr-en``, back-translation)."""
    parts = entry.split(sep)
    wanted = {"lang": (1,), "pair": (2,), "both": (1, 2), "roundtrip": (3,)}[form]
    shape = {"lang": "a language", "pair": f"a pair 'l1{sep}l2'", "both": f"a language nor a pair 'l1{sep}l2'",
             "roundtrip": f"a round trip 'l1{sep}l2{sep}l1'"}[form]
    if len(parts) not in wanted or not all(parts) or any(c in p for p in parts for c in "->"):
        return f"is {'neither' if form == 'both' else 'not'} {shape}"
    if form == "roundtrip" and parts[0] != parts[2]:
        return "must return to its first language (the original's bt_steps l1-l2-l1)"
    if len(parts) >= 2 and parts[0] == parts[1]:
        return "pairs a language with itself"
    return ""


# -- schedules ----------------------------------------------------------------------------------
def parse_schedule(text: str) -> list[tuple[int, float]]:
    """``"0.5"`` -> [(0, 0.5)]; ``"0:1,1000:0.1"`` -> points with strictly increasing steps."""
    text = str(text).strip()
    if ":" not in text:
        try:
            return [(0, float(text))]
        except ValueError:
            raise ValueError(f"{text!r} is neither a number nor 'step:value,...'") from None
    points = []
    for part in text.split(","):
        step, _, value = part.partition(":")
        try:
            points.append((int(step), float(value)))
        except ValueError:
            raise ValueError(f"bad schedule point {part!r} in {text!r}") from None
    steps = [s for s, _ in points]
    if any(b <= a for a, b in zip(steps, steps[1:])):
        raise ValueError(f"schedule steps must be strictly increasing in {text!r}")
    return points


# -- strict loading -----------------------------------------------------------------------------
def _positive(obj: Any, prefix: str, *names: str) -> None:
    for name in names:
        if getattr(obj, name) <= 0:
            raise XLMError(f"{prefix}.{name}: must be positive, got {getattr(obj, name)}")


def _probability(obj: Any, prefix: str, *names: str) -> None:
    for name in names:
        if not 0 <= getattr(obj, name) < 1:
            raise XLMError(f"{prefix}.{name}: must be in [0, 1), got {getattr(obj, name)}")


def config_key(f: dataclasses.Field) -> str:
    """The YAML key of a field: its name, or ``metadata["key"]`` when the key is a Python keyword (``init.from``)."""
    return f.metadata.get("key", f.name)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (ints widen to floats; nothing else converts)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise XLMError(f"{key}: expected a mapping of {', '.join(config_key(f) for f in dataclasses.fields(tp))}, "
                           f"got {type(value).__name__}")
        return from_dict(tp, value, key)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except XLMError as e:
                errors.append(str(e))
        raise XLMError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise XLMError(f"{key}: must be one of {list(choices)}, got {value!r}")
        return value
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise XLMError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        kt, vt = typing.get_args(tp)
        if not isinstance(value, dict):
            raise XLMError(f"{key}: expected a mapping, got {type(value).__name__}")
        return {_coerce(k, kt, key): _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise XLMError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise XLMError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise XLMError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # lambda "1" written as 1 in YAML
        if not isinstance(value, str):
            raise XLMError(f"{key}: expected a string, got {value!r}")
        return value
    if tp is Any:
        return value
    raise TypeError(f"unsupported config annotation {tp!r} for {key}")


def from_dict(cls: type, data: dict, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys with the list of valid ones."""
    hints = typing.get_type_hints(cls)
    fields = {config_key(f): f for f in dataclasses.fields(cls)}
    kwargs = {}
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if k not in fields:
            raise XLMError(f"unknown config key {key!r}; valid keys{' under ' + repr(prefix) if prefix else ''}: "
                           f"{', '.join(fields)}")
        name = fields[k].name
        kwargs[name] = _coerce(v, hints[name], key)
    return cls(**kwargs)


def to_dict(cfg: Any) -> Any:
    """The resolved config as plain YAML/JSON-safe data, under the YAML keys."""
    if dataclasses.is_dataclass(cfg):
        return {config_key(f): to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, list):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    return cfg


def _parse_override_value(text: str, tp: Any, key: str) -> Any:
    """Parse a command-line value by the field's type: YAML syntax, but strings stay strings."""
    base = typing.get_origin(tp)
    if tp is str or (base is Literal and all(isinstance(c, str) for c in typing.get_args(tp))):
        return text
    if tp is float or (base in (Union, types.UnionType) and float in typing.get_args(tp)):  # YAML 1.1: "3e-4" is a str
        try:
            return float(text)
        except ValueError:
            pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise XLMError(f"{key}: cannot parse {text!r}") from None


def apply_overrides(data: dict, overrides: list[str], cls: type = Config) -> dict:
    """Apply ``section.key=value`` pairs to the raw config mapping, checking each path exists."""
    for item in overrides:
        path, sep, text = item.partition("=")
        if not sep or not path:
            raise XLMError(f"override {item!r}: expected key.sub=value")
        parts = path.split(".")
        node, tp = data, cls
        for i, part in enumerate(parts):
            key = ".".join(parts[: i + 1])
            if not dataclasses.is_dataclass(tp):
                raise XLMError(f"override {item!r}: {'.'.join(parts[:i])!r} has no sub-keys")
            fields = {config_key(f): f for f in dataclasses.fields(tp)}
            if part not in fields:
                raise XLMError(f"unknown config key {key!r}; valid keys: {', '.join(fields)}")
            tp = typing.get_type_hints(tp)[fields[part].name]
            if i < len(parts) - 1:
                nxt = node.get(part)
                if nxt is None:
                    nxt = node[part] = {}
                elif not isinstance(nxt, dict):
                    raise XLMError(f"{key}: expected a mapping")
                node = nxt
            else:
                node[part] = _parse_override_value(text, tp, key)
    return data


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config (or defaults when ``path`` is None), apply overrides, validate."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise XLMError(f"{path}: cannot read config: {e.strerror}") from None
        except UnicodeDecodeError:
            raise XLMError(f"{path}: config is not valid UTF-8") from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark else str(path)
            raise XLMError(f"{where}: invalid YAML: {getattr(e, 'problem', e)}") from None
        if not isinstance(data, dict):
            raise XLMError(f"{path}: top level must be a mapping of sections")
    data = apply_overrides(data, overrides or [])
    try:
        cfg = from_dict(Config, data)
    except XLMError as e:
        raise XLMError(f"{path}: {e}" if path else str(e)) from None
    try:
        cfg.validate()
    except XLMError as e:
        raise XLMError(f"{path}: {e}" if path else str(e)) from None
    return cfg


def config_from_dict(data: dict) -> Config:
    """Rebuild a validated :class:`Config` from :func:`to_dict` output (e.g. from a checkpoint)."""
    cfg = from_dict(Config, data)
    cfg.validate()
    return cfg


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
