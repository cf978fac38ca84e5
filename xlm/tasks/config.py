"""Strict YAML configs of the downstream tasks: one dataclass per task, sections shared where they agree.

Every config has ``run`` and ``model``; the fine-tuned tasks (``sentence``, ``tokens``, ``qa``) add
``head``, ``optim`` (the pretraining :class:`~xlm.config.OptimConfig`) and ``train``; ``data`` is
per task. As the pretraining configs: an unknown key, a value of the wrong type or a broken
invariant is an :class:`XLMError` naming the dotted key; ``KEY=VALUE`` overrides follow ``--config``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from xlm.config import OptimConfig, apply_overrides, from_dict
from xlm.errors import XLMError

SPLITS = ("train", "valid", "test")


@dataclass
class TaskRunConfig:
    dir: str = "runs/task"
    seed: int = 0
    log_every: int = 50
    tensorboard: bool = False
    debug: bool = False


@dataclass
class TaskModelConfig:
    path: str = ""                  # our checkpoint or run folder, an original .pth, a Hugging Face folder
    lowercase: bool | None = None   # null: as the checkpoint says; true/false: override
    codes: str = ""                 # BPE codes, for models that do not carry them (original .pth)
    vocab: str = ""                 # vocabulary, for a model-only Hugging Face folder

    def load(self, device: str = "cpu") -> Any:
        """The pretrained model, with what this section supplies (:func:`xlm.load_pretrained`)."""
        from xlm.errors import warn
        from xlm.pretrained import load_pretrained

        p = load_pretrained(self.path, codes=self.codes or None, lowercase=self.lowercase,
                            vocab=self.vocab or None, device=device)
        if p.dictionary is not None and p.dictionary.layout != "xlm":
            warn(f"model.path: {self.path} has XLM-R's special ids; fine-tuning frames inputs as XLM does "
                 "(</s> a </s> b </s>, padding id 2), not as XLM-R (<s> a </s></s> b </s>)")
        return p


@dataclass
class HeadConfig:
    dropout: float = 0.1            # before the output layer (the original's --dropout)
    lr: float | None = None         # the head's learning rate; null: optim.lr (the original's optimizer_p)


@dataclass
class FtTrainConfig:
    epochs: int = 5
    max_steps: int = -1             # -1: epochs * steps per epoch
    batch_size: int = 32            # examples (features for qa) per update, summed over processes
    eval_every: int = 0             # in steps; 0: at the end of every epoch
    eval_batch_size: int = 64
    keep_last: int = 1
    finetune_layers: str = "0:_1"   # the original's --finetune_layers: 0 = embeddings, _1 = last layer
    weighted: bool = False          # class-weighted loss (the original's --weighted_training)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    validation_metric: str = ""     # e.g. valid_en_acc; empty: the task's main metric averaged over data.langs


@dataclass
class LangData:
    """Where the examples are and which languages to train and test on."""

    path: str = ""
    langs: list[str] = field(default_factory=list)              # evaluated languages (table columns)
    train_langs: list[str] = field(default_factory=lambda: ["en"])  # one: zero-shot; all: translate-train-all
    files: dict[str, str] = field(default_factory=dict)         # split -> file pattern ({lang}); format defaults
    files_by_lang: dict[str, dict[str, str]] = field(default_factory=dict)  # lang -> split -> file (exceptions)
    max_len: int = 256
    max_train_examples: int = -1    # per training language; -1: all

    def check_langs(self, prefix: str = "data") -> None:
        if not self.path:
            raise XLMError(f"{prefix}.path: the data folder is required")
        if not self.langs:
            raise XLMError(f"{prefix}.langs: list the languages to evaluate, e.g. [en, fr]")
        for lang in self.train_langs:
            if lang not in self.langs:
                raise XLMError(f"{prefix}.train_langs: {lang!r} is not in {prefix}.langs {self.langs}")
        for split in self.files:
            if split not in SPLITS:
                raise XLMError(f"{prefix}.files: unknown split {split!r} (train, valid, test)")
        if self.max_len < 8:
            raise XLMError(f"{prefix}.max_len: must be at least 8, got {self.max_len}")

    def file_for(self, split: str, lang: str, defaults: dict[str, str],
                 defaults_by_lang: dict[str, dict[str, str]] | None = None) -> str | None:
        """The file pattern of a split and language: ``files_by_lang``, else ``files``, else the format's.

        An empty pattern means no such file: allowed for ``test``, and for ``valid`` of a language
        that is not trained on; ``train`` and the training languages' ``valid`` are required.
        """
        by_lang = {**(defaults_by_lang or {}), **self.files_by_lang}.get(lang, {})
        pattern = by_lang.get(split, {**defaults, **self.files}.get(split, ""))
        if pattern:
            return pattern
        if split == "train" or (split == "valid" and lang in self.train_langs):
            raise XLMError(f"data.files.{split}: no file for {lang!r} (needed: it is a training language)")
        return None


@dataclass
class SentenceData(LangData):
    format: Literal["xnli", "pawsx", "tsv"] = "tsv"
    columns: dict[str, str] = field(default_factory=dict)  # tsv: text_a, text_b, label -> header name or 0-based index
    header: bool = False            # tsv: the first line names the columns
    labels: list[str] = field(default_factory=list)        # empty: the sorted labels of the training files
    regression: bool = False        # a real-valued target (STS-B): MSE loss, Pearson/Spearman
    tokenized: bool = False         # text is already Moses-tokenized (BPE and lowercasing still apply)
    positions: Literal["continue", "restart"] = "continue"  # the original: continue (reset_positions=False)
    lang_ids: bool = True           # add language embeddings (XNLI); the original's GLUE runs passed none
    skip_malformed: bool = False    # skip lines with too few fields (counted in a warning) instead of failing


@dataclass
class TokensData(LangData):
    format: Literal["conll", "conllu"] = "conll"
    labels: list[str] = field(default_factory=list)        # empty: every label of the files read, sorted
    column: Literal["upos", "xpos"] = "upos"               # conllu: which tag to predict
    metric: Literal["seqeval", "accuracy"] = "seqeval"      # entity F1 (NER) or word accuracy (POS)


@dataclass
class QAData(LangData):
    format: Literal["squad"] = "squad"
    question_langs: dict[str, str] = field(default_factory=dict)  # context lang -> question lang (G-XLT)
    max_len: int = 384
    doc_stride: int = 128
    max_query_len: int = 64
    n_best: int = 20
    max_answer_len: int = 30        # pieces
    normalization: Literal["squad", "mlqa"] = "squad"


@dataclass
class FtTaskConfig:
    run: TaskRunConfig = field(default_factory=TaskRunConfig)
    model: TaskModelConfig = field(default_factory=TaskModelConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-4, warmup_updates=0, schedule="linear"))
    train: FtTrainConfig = field(default_factory=FtTrainConfig)

    def validate(self) -> None:
        if not self.model.path:
            raise XLMError("model.path: the pretrained model to fine-tune is required")
        self.data.check_langs()  # type: ignore[attr-defined]
        for name in ("epochs", "batch_size", "eval_batch_size", "keep_last"):
            if getattr(self.train, name) <= 0:
                raise XLMError(f"train.{name}: must be positive, got {getattr(self.train, name)}")
        if self.train.max_steps == 0 or self.train.max_steps < -1 or self.train.eval_every < 0:
            raise XLMError("train.max_steps: -1 or positive; train.eval_every: >= 0")
        if not 0 <= self.head.dropout < 1:
            raise XLMError(f"head.dropout: must be in [0, 1), got {self.head.dropout}")
        if self.head.lr is not None and self.head.lr <= 0:
            raise XLMError(f"head.lr: must be positive or null, got {self.head.lr}")
        parse_layer_range(self.train.finetune_layers, None)
        self.optim.validate("optim")


@dataclass
class SentenceConfig(FtTaskConfig):
    data: SentenceData = field(default_factory=SentenceData)

    def validate(self) -> None:
        super().validate()
        if self.data.format != "tsv" and (self.data.columns or self.data.header):
            raise XLMError(f"data.columns, data.header: only for format tsv ({self.data.format} files have their own)")
        if self.data.regression and self.data.labels:
            raise XLMError("data.labels: a regression task has no labels")
        if self.data.regression and self.train.weighted:
            raise XLMError("train.weighted: class weights need a classification task")


@dataclass
class TokensConfig(FtTaskConfig):
    data: TokensData = field(default_factory=TokensData)


@dataclass
class QAConfig(FtTaskConfig):
    data: QAData = field(default_factory=QAData)

    def validate(self) -> None:
        super().validate()
        d = self.data
        if d.max_query_len < 1 or d.max_query_len + 16 > d.max_len:
            raise XLMError(f"data.max_query_len: must be in [1, data.max_len - 16], got {d.max_query_len}")
        if not 0 < d.doc_stride <= d.max_len:
            raise XLMError(f"data.doc_stride: must be in [1, data.max_len], got {d.doc_stride}")
        if d.n_best < 1 or d.max_answer_len < 1:
            raise XLMError("data.n_best, data.max_answer_len: must be positive")
        if self.train.weighted:
            raise XLMError("train.weighted: not available for qa")


@dataclass
class EncoderConfig:
    """How sentences are embedded for retrieval and mining (:func:`xlm.embed.encode`)."""

    pooling: Literal["mean", "first"] = "mean"
    layer: int | None = None        # null: the last layer
    batch_size: int = 64
    tokenized: bool = False


@dataclass
class RetrievalData:
    path: str = ""
    langs: list[str] = field(default_factory=list)      # each is paired with target_lang
    target_lang: str = "en"
    files: dict[str, str] = field(default_factory=lambda: {  # Tatoeba as LASER / XTREME ship it
        "src": "tatoeba.{lang3}-eng.{lang3}", "tgt": "tatoeba.{lang3}-eng.eng"})
    lang3: dict[str, str] = field(default_factory=dict)      # lang -> the file's code (Tatoeba uses ISO 639-3)
    margin: bool = False            # ratio margin instead of cosine
    max_pairs: int = -1


@dataclass
class RetrievalConfig:
    run: TaskRunConfig = field(default_factory=TaskRunConfig)
    model: TaskModelConfig = field(default_factory=TaskModelConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    data: RetrievalData = field(default_factory=RetrievalData)

    def validate(self) -> None:
        if not self.model.path:
            raise XLMError("model.path: the model to evaluate is required")
        if not self.data.path or not self.data.langs:
            raise XLMError("data.path, data.langs: the data folder and its languages are required")
        for key in ("src", "tgt"):
            if key not in self.data.files:
                raise XLMError(f"data.files: needs {key!r} (a file pattern with {{lang}} or {{lang3}})")


@dataclass
class MiningData:
    path: str = ""
    langs: list[str] = field(default_factory=list)      # each mined against target_lang (BUCC: de, fr, ru, zh)
    target_lang: str = "en"
    tune_split: str = "sample"      # the split whose gold pairs choose the threshold (BUCC: sample)
    eval_split: str = "test"        # mined with that threshold; scored when its .gold file exists
    k: int = 4                      # neighbours in the margin (Artetxe & Schwenk, 2019)
    margin: Literal["ratio", "distance", "none"] = "ratio"


@dataclass
class MiningConfig:
    run: TaskRunConfig = field(default_factory=TaskRunConfig)
    model: TaskModelConfig = field(default_factory=TaskModelConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    data: MiningData = field(default_factory=MiningData)

    def validate(self) -> None:
        if not self.model.path:
            raise XLMError("model.path: the model to evaluate is required")
        if not self.data.path or not self.data.langs:
            raise XLMError("data.path, data.langs: the BUCC folder and its languages are required")
        if self.data.tune_split == self.data.eval_split:
            raise XLMError("data.tune_split: the threshold is chosen on a gold sample, never on the evaluated split")
        if self.data.k < 1:
            raise XLMError(f"data.k: must be positive, got {self.data.k}")


def fill(pattern: str, key: str, **names: str) -> str:
    """``pattern.format(**names)`` with a config error naming ``key`` for an unknown placeholder."""
    try:
        return pattern.format(**names)
    except (KeyError, IndexError, ValueError) as e:
        raise XLMError(f"{key}: bad file pattern {pattern!r} ({e}); placeholders: "
                       f"{', '.join('{' + n + '}' for n in names)}") from None


CONFIGS: dict[str, type] = {"sentence": SentenceConfig, "tokens": TokensConfig, "qa": QAConfig,
                            "retrieval": RetrievalConfig, "mining": MiningConfig}


def parse_layer_range(spec: str, n_layers: int | None) -> tuple[int, int]:
    """The original's ``--finetune_layers i:j`` (``_`` for minus): 0 is the embeddings, k the k-th layer.

    Negative values count from the end (``_1`` = the last layer). Returns ``(i, j)`` resolved against
    ``n_layers`` (unresolved when ``n_layers`` is None, to check the syntax only).
    """
    parts = spec.split(":")
    try:
        i, j = (int(s.replace("_", "-")) for s in parts)
    except ValueError:
        raise XLMError(f"train.finetune_layers: expected 'i:j' such as '0:_1', got {spec!r}") from None
    if len(parts) != 2:
        raise XLMError(f"train.finetune_layers: expected 'i:j' such as '0:_1', got {spec!r}")
    if n_layers is None:
        return i, j
    i, j = (n_layers + v + 1 if v < 0 else v for v in (i, j))
    if not (0 <= i <= n_layers and 0 <= j <= n_layers):
        raise XLMError(f"train.finetune_layers: {spec!r} is out of range for {n_layers} layers")
    return i, j


def load_task_config(task: str, path: str | os.PathLike | None, overrides: list[str] | None = None) -> Any:
    """Strict loading of ``task``'s config; errors name the file and the dotted key."""
    if task not in CONFIGS:
        raise XLMError(f"unknown task {task!r}; choose one of {', '.join(CONFIGS)}")
    cls = CONFIGS[task]
    data: dict = {}
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except OSError as e:
            raise XLMError(f"{path}: cannot read config: {e.strerror}") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark else str(path)
            raise XLMError(f"{where}: invalid YAML: {getattr(e, 'problem', e)}") from None
        if not isinstance(data, dict):
            raise XLMError(f"{path}: top level must be a mapping of sections")
    try:
        data = apply_overrides(data, overrides or [], cls)
        cfg = from_dict(cls, data)
        cfg.validate()
    except XLMError as e:
        raise XLMError(f"{path}: {e}" if path else str(e)) from None
    return cfg
