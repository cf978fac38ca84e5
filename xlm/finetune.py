"""Sentence-pair classification fine-tuning (XNLI-style): train in one language, test in all.

Data: one TSV file per split and language, ``premise <TAB> hypothesis <TAB> label`` per line, found
by ``data.file_pattern`` (default ``{split}.{lang}.tsv``) under ``data.path``. The labels are the
ones of ``data.labels`` (XNLI: entailment, neutral, contradiction). ``train`` is read for
``data.train_langs`` (one language: zero-shot transfer; every language: translate-train-all), and
``valid``/``test`` for every language of ``data.langs``.

Model: the pretrained encoder (:func:`xlm.load_pretrained`, any format) reads
``</s> premise </s> </s> hypothesis </s>``, raw text put through the model's own pipeline (Moses
tokenization, lowercase + accent removal when the model was trained so, its BPE codes, its
dictionary). Each half carries its sentence's language id. Positions *continue* across the two
halves by default (``train.positions: continue``, as the original's XNLI fine-tuning, which called
``concat_batches(..., reset_positions=False)``); ``restart`` restarts them at 0 for the hypothesis,
as TLM pretraining does. A dropout + linear classifier reads the state of the first ``</s>``; the
encoder is fine-tuned with it (``train.freeze_encoder: true`` trains the classifier only).

Shared building blocks of pretraining are reused: AdamW + learning-rate schedule
(:mod:`xlm.optim`), atomic checkpoints (:class:`xlm.checkpoint.CheckpointManager`: ``step-*.pt``,
``latest``, ``best.pt``, which also loads with :func:`xlm.load_pretrained` as a plain encoder),
``train.log`` + ``metrics.jsonl`` (:class:`xlm.logging.RunLogger`), and process helpers
(:mod:`xlm.distributed`: every rank trains on its shard of the examples, gradients and metrics are
summed across ranks). Rerunning the same command resumes from the newest checkpoint.

At the end the test (and valid) accuracies are printed in the XNLI paper's layout, one row with a
column per language and their average, and written to ``RUN/results.json``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as tdist
import torch.nn.functional as F
import yaml
from torch import Tensor, nn

from xlm.checkpoint import CheckpointManager, model_payload, unwrap
from xlm.config import OptimConfig, apply_overrides, from_dict
from xlm.data.dictionary import EOS_INDEX, PAD_INDEX
from xlm.data.sampling import torch_seed
from xlm.distributed import DistInfo, all_reduce_sums, get_dist_info, init_distributed, pick_device
from xlm.errors import XLMError
from xlm.io import atomic_write_text
from xlm.logging import RunLogger

SPLITS = ("train", "valid", "test")


# -- configuration ------------------------------------------------------------------------------
@dataclass
class FtRunConfig:
    dir: str = "runs/finetune"
    seed: int = 0
    log_every: int = 50
    tensorboard: bool = False
    debug: bool = False


@dataclass
class FtModelConfig:
    path: str = ""                      # pretrained model: our checkpoint/run folder, original .pth, HF folder
    lowercase: bool | None = None       # null: as the checkpoint says; true/false: override
    codes: str = ""                     # BPE codes, for models that do not carry them (original .pth)
    vocab: str = ""                     # vocabulary, for a model-only Hugging Face folder
    classifier_dropout: float = 0.1


@dataclass
class FtDataConfig:
    path: str = ""
    file_pattern: str = "{split}.{lang}.tsv"
    langs: list[str] = field(default_factory=list)          # evaluated languages (table columns)
    train_langs: list[str] = field(default_factory=lambda: ["en"])
    labels: list[str] = field(default_factory=lambda: ["entailment", "neutral", "contradiction"])
    header: bool = False                # skip the first line of every file
    tokenized: bool = False             # text is already Moses-tokenized (BPE is still applied)
    max_len: int = 256                  # pieces per pair, framing included; longer sides are cut
    max_train_examples: int = -1        # per training language; -1: all


@dataclass
class FtTrainConfig:
    epochs: int = 5
    max_steps: int = -1                 # -1: epochs * steps per epoch
    batch_size: int = 32                # pairs per update (summed over processes)
    eval_every: int = 0                 # in steps; 0: at the end of every epoch
    eval_batch_size: int = 64
    keep_last: int = 1
    positions: Literal["continue", "restart"] = "continue"
    freeze_encoder: bool = False
    validation_metric: str = "valid_acc"   # mean valid accuracy over data.langs (higher is better)


@dataclass
class FinetuneConfig:
    run: FtRunConfig = field(default_factory=FtRunConfig)
    model: FtModelConfig = field(default_factory=FtModelConfig)
    data: FtDataConfig = field(default_factory=FtDataConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-4, warmup_updates=0, schedule="linear"))
    train: FtTrainConfig = field(default_factory=FtTrainConfig)

    def validate(self) -> None:
        if not self.model.path:
            raise XLMError("model.path: the pretrained model to fine-tune is required")
        if not self.data.path:
            raise XLMError("data.path: the folder of {split}.{lang}.tsv files is required")
        if not self.data.langs:
            raise XLMError("data.langs: list the languages to evaluate, e.g. [en, fr]")
        for lang in self.data.train_langs:
            if lang not in self.data.langs:
                raise XLMError(f"data.train_langs: {lang!r} is not in data.langs {self.data.langs}")
        if not self.data.train_langs:
            raise XLMError("data.train_langs: at least one training language")
        if len(self.data.labels) < 2 or len(set(self.data.labels)) != len(self.data.labels):
            raise XLMError(f"data.labels: at least two distinct labels, got {self.data.labels}")
        if "{split}" not in self.data.file_pattern or "{lang}" not in self.data.file_pattern:
            raise XLMError(f"data.file_pattern: must contain {{split}} and {{lang}}, got {self.data.file_pattern!r}")
        if self.data.max_len < 8:
            raise XLMError(f"data.max_len: must be at least 8, got {self.data.max_len}")
        for name in ("epochs", "batch_size", "eval_batch_size", "keep_last"):
            if getattr(self.train, name) <= 0:
                raise XLMError(f"train.{name}: must be positive, got {getattr(self.train, name)}")
        if self.train.max_steps == 0 or self.train.max_steps < -1 or self.train.eval_every < 0:
            raise XLMError("train.max_steps: -1 or positive; train.eval_every: >= 0")
        if not 0 <= self.model.classifier_dropout < 1:
            raise XLMError(f"model.classifier_dropout: must be in [0, 1), got {self.model.classifier_dropout}")
        self.optim.validate("optim")


def load_finetune_config(path: str | os.PathLike | None, overrides: list[str] | None = None) -> FinetuneConfig:
    """Strict YAML loading: unknown keys, bad types and bad values are errors naming the dotted key."""
    data: dict = {}
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except OSError as e:
            raise XLMError(f"{path}: cannot read config: {e.strerror}") from None
        except yaml.YAMLError as e:
            raise XLMError(f"{path}: invalid YAML: {getattr(e, 'problem', e)}") from None
        if not isinstance(data, dict):
            raise XLMError(f"{path}: top level must be a mapping of sections")
    try:
        data = apply_overrides(data, overrides or [], FinetuneConfig)
        cfg = from_dict(FinetuneConfig, data)
        cfg.validate()
    except XLMError as e:
        raise XLMError(f"{path}: {e}" if path else str(e)) from None
    return cfg


# -- data ---------------------------------------------------------------------------------------
@dataclass
class PairExamples:
    """Encoded pairs of one split and language: token ids of each side (framing not included)."""

    premise: list[list[int]]
    hypothesis: list[list[int]]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def read_tsv(path: Path, labels: list[str], header: bool) -> list[tuple[str, str, int]]:
    label_ids = {lab: i for i, lab in enumerate(labels)}
    out = []
    try:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if header and lineno == 1:
                    continue
                line = line.rstrip("\n").rstrip("\r")
                if not line:
                    continue
                parts = line.split("\t")
                if len(parts) != 3:
                    raise XLMError(f"{path}:{lineno}: expected 'premise<TAB>hypothesis<TAB>label', "
                                   f"got {len(parts)} fields")
                if parts[2] not in label_ids:
                    raise XLMError(f"{path}:{lineno}: label {parts[2]!r} is not one of data.labels {labels}")
                out.append((parts[0], parts[1], label_ids[parts[2]]))
    except FileNotFoundError:
        raise XLMError(f"{path}: no such file") from None
    except UnicodeDecodeError as e:
        raise XLMError(f"{path}: invalid UTF-8 at byte {e.start}") from None
    return out


def encode_pairs(p: Any, rows: list[tuple[str, str, int]], lang: str, tokenized: bool) -> PairExamples:
    from xlm.embed import _pipeline

    pipe = _pipeline(p)
    enc = [p.dictionary.encode(pipe(s, lang, tokenized)) if s.strip() else [] for s in
           [r[0] for r in rows] + [r[1] for r in rows]]
    n = len(rows)
    return PairExamples(enc[:n], enc[n:], np.array([r[2] for r in rows], dtype=np.int64))


def make_batch(
    ex: PairExamples, idx: list[int] | np.ndarray, lang_id: int, max_len: int, restart_positions: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``</s> p </s> </s> h </s>`` for each index: tokens, lengths, langs, positions, labels."""
    half = (max_len - 4) // 2
    seqs, segs = [], []
    for i in idx:
        a, b = ex.premise[i], ex.hypothesis[i]
        if len(a) + len(b) + 4 > max_len:  # cut the longer side first
            la = min(len(a), max(half, max_len - 4 - len(b)))
            a, b = a[:la], b[: max_len - 4 - la]
        seqs.append([EOS_INDEX, *a, EOS_INDEX, EOS_INDEX, *b, EOS_INDEX])
        segs.append(len(a) + 2)
    lengths = torch.tensor([len(s) for s in seqs])
    x = torch.full((len(seqs), int(lengths.max())), PAD_INDEX, dtype=torch.long)
    pos = torch.zeros_like(x)
    for row, (s, first) in enumerate(zip(seqs, segs)):
        x[row, : len(s)] = torch.tensor(s)
        pos[row, : len(s)] = torch.arange(len(s))
        if restart_positions:
            pos[row, first : len(s)] = torch.arange(len(s) - first)
    langs = torch.full_like(x, lang_id)
    return x, lengths, langs, pos, torch.as_tensor(ex.labels[np.asarray(idx)])


# -- model --------------------------------------------------------------------------------------
class PairClassifier(nn.Module):
    """Pretrained encoder + dropout + linear layer on the first token's state."""

    def __init__(self, encoder: nn.Module, n_labels: int, dropout: float):
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(encoder.dim, n_labels)

    def forward(self, x: Tensor, lengths: Tensor, langs: Tensor, positions: Tensor) -> Tensor:
        h = self.encoder(x, lengths=lengths, langs=langs if self.encoder.use_lang_emb else None, positions=positions)
        return self.proj(self.dropout(h[:, 0]))


# -- the fine-tuning run ------------------------------------------------------------------------
class Finetuner:
    def __init__(self, cfg: FinetuneConfig):
        from xlm.pretrained import load_pretrained

        self.cfg = cfg
        self.dist: DistInfo = get_dist_info()
        self.device = pick_device(self.dist)
        init_distributed(self.dist, self.device)
        self.pretrained = p = load_pretrained(cfg.model.path, codes=cfg.model.codes or None,
                                              lowercase=cfg.model.lowercase, vocab=cfg.model.vocab or None)
        for lang in cfg.data.langs:
            if len(p.lang2id) > 1 and lang not in p.lang2id:
                raise XLMError(f"data.langs: {lang!r} is not a language of the model ({', '.join(sorted(p.lang2id))})")
        max_pos = p.model.position_embeddings.num_embeddings
        if cfg.data.max_len > max_pos:
            raise XLMError(f"data.max_len: {cfg.data.max_len} exceeds the model's max_positions ({max_pos})")
        self.data = self._load_data()
        torch.manual_seed(torch_seed(cfg.run.seed, 1))  # the classifier's initial weights
        self.model = PairClassifier(p.model, len(cfg.data.labels), cfg.model.classifier_dropout).to(self.device)
        if cfg.train.freeze_encoder:
            for prm in self.model.encoder.parameters():
                prm.requires_grad_(False)
        from xlm.optim import LRScheduler, build_optimizer

        self.n_train = sum(len(self.data[("train", lg)]) for lg in cfg.data.train_langs)
        self.steps_per_epoch = max(1, math.ceil(self.n_train / cfg.train.batch_size))
        self.max_steps = cfg.train.max_steps if cfg.train.max_steps > 0 else cfg.train.epochs * self.steps_per_epoch
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.scheduler = LRScheduler(self.optimizer, cfg.optim, self.max_steps)
        self.step = 0
        self.best: float | None = None
        self.run_dir = Path(cfg.run.dir)
        self.log = RunLogger(self.run_dir, cfg.run.tensorboard, self.dist.is_main, cfg.run.debug)
        self.ckpt = CheckpointManager(self.run_dir / "checkpoints", cfg.train.keep_last, self.dist.is_main)

    def lang_id(self, lang: str) -> int:
        return self.pretrained.lang2id.get(lang, 0)

    def _load_data(self) -> dict[tuple[str, str], PairExamples]:
        d = self.cfg.data
        out = {}
        for split in SPLITS:
            for lang in d.train_langs if split == "train" else d.langs:
                path = Path(d.path) / d.file_pattern.format(split=split, lang=lang)
                rows = read_tsv(path, d.labels, d.header)
                if split == "train" and d.max_train_examples > 0:
                    rows = rows[: d.max_train_examples]
                if not rows:
                    raise XLMError(f"{path}: no examples")
                out[(split, lang)] = encode_pairs(self.pretrained, rows, lang, d.tokenized)
        return out

    # the training order: every (language, example) of the training set, shuffled per epoch,
    # this rank's share of each batch
    def _epoch_order(self, epoch: int) -> list[tuple[str, int]]:
        items = [(lg, i) for lg in self.cfg.data.train_langs for i in range(len(self.data[("train", lg)]))]
        perm = np.random.default_rng([self.cfg.run.seed, epoch]).permutation(len(items))
        return [items[j] for j in perm]

    def _batch_items(self, step: int) -> list[tuple[str, int]]:
        epoch, k = divmod(step, self.steps_per_epoch)
        order = self._epoch_order(epoch)
        bs = self.cfg.train.batch_size
        batch = order[k * bs : (k + 1) * bs]
        return batch[self.dist.rank :: self.dist.world_size]  # shard the batch by rank

    def train_step(self) -> dict[str, float]:
        self.model.train()
        torch.manual_seed(torch_seed(self.cfg.run.seed, self.dist.rank, self.step, 2))  # dropout
        items = self._batch_items(self.step)
        loss_sum, correct, n = 0.0, 0, 0
        self.optimizer.zero_grad(set_to_none=not self.dist.distributed)  # ranks must reduce the same grads
        total = self.cfg.train.batch_size
        for lang in dict.fromkeys(lg for lg, _ in items):  # one forward per language (its language ids)
            idx = [i for lg, i in items if lg == lang]
            x, lengths, langs, pos, y = (t.to(self.device) for t in self._batch(("train", lang), idx))
            logits = self.model(x, lengths, langs, pos)
            loss = F.cross_entropy(logits.float(), y, reduction="sum")
            (loss / total).backward()
            loss_sum += float(loss.detach())
            correct += int((logits.argmax(-1) == y).sum())
            n += len(idx)
        if self.dist.distributed:  # no DDP wrapper: sum the gradients (each already divided by the batch)
            for prm in self.model.parameters():
                if prm.grad is not None:
                    tdist.all_reduce(prm.grad)
        params = [q for q in self.model.parameters() if q.requires_grad]
        from xlm.optim import clip_grad_norm

        gnorm = clip_grad_norm(params, self.cfg.optim.clip_grad_norm)
        lr = self.scheduler.lr
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        sums = all_reduce_sums({"loss": loss_sum, "correct": correct, "n": n}, self.device)
        return {"loss": sums["loss"] / max(sums["n"], 1), "acc": 100 * sums["correct"] / max(sums["n"], 1),
                "lr": lr, "grad_norm": gnorm}

    def _batch(self, key: tuple[str, str], idx: list[int] | np.ndarray):
        return make_batch(self.data[key], idx, self.lang_id(key[1]), self.cfg.data.max_len,
                          self.cfg.train.positions == "restart")

    @torch.no_grad()
    def evaluate(self, splits: tuple[str, ...] = ("valid", "test")) -> dict[str, float]:
        self.model.eval()
        metrics: dict[str, float] = {}
        for split in splits:
            sums: dict[str, float] = {}
            for lang in self.cfg.data.langs:
                ex = self.data[(split, lang)]
                mine = np.arange(len(ex))[self.dist.rank :: self.dist.world_size]
                correct = 0
                bs = self.cfg.train.eval_batch_size
                for s in range(0, len(mine), bs):
                    batch = self._batch((split, lang), mine[s : s + bs])
                    x, lengths, langs, pos, y = (t.to(self.device) for t in batch)
                    correct += int((self.model(x, lengths, langs, pos).argmax(-1) == y).sum())
                sums[f"{lang}_correct"], sums[f"{lang}_n"] = correct, len(mine)
            sums = all_reduce_sums(sums, self.device)
            accs = [100 * sums[f"{lg}_correct"] / max(sums[f"{lg}_n"], 1) for lg in self.cfg.data.langs]
            for lang, acc in zip(self.cfg.data.langs, accs):
                metrics[f"{split}_{lang}_acc"] = acc
            metrics[f"{split}_acc"] = float(np.mean(accs))
        return metrics

    # -- checkpoints --------------------------------------------------------------------------------
    def _payload(self) -> dict[str, Any]:
        p = self.pretrained
        out = model_payload(self.model.encoder, unwrap(p.model).cfg, p.lang2id, p.dictionary, self.cfg,
                            p.bpe_codes, self.step, p.text_settings)
        out.update({"lowercase": p.lowercase, "causal": False, "labels": list(self.cfg.data.labels),
                    "classifier": {k: v.detach().cpu() for k, v in self.model.proj.state_dict().items()}})
        return out

    def save(self) -> None:
        payload = self._payload()
        payload.update({"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                        "train_state": {"step": self.step, "best": self.best}})
        self.ckpt.save(payload, self.step)

    def resume(self) -> bool:
        self.ckpt.remove_stale_temporaries()
        found = self.ckpt.load_latest()
        if found is None:
            return False
        ckpt, path = found
        if ckpt.get("labels") != list(self.cfg.data.labels):
            raise XLMError(f"{path}: fine-tuned with labels {ckpt.get('labels')}, the config says "
                           f"{self.cfg.data.labels}; use a new run.dir")
        self.model.encoder.load_state_dict(ckpt["model"])
        self.model.proj.load_state_dict(ckpt["classifier"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.step, self.best = int(ckpt["train_state"]["step"]), ckpt["train_state"]["best"]
        self.log.info(f"resumed from {path} (step {self.step})")
        return True

    def _load_best(self) -> None:
        from xlm.serialization import safe_load

        if self.ckpt.best_path.exists():
            ckpt = safe_load(self.ckpt.best_path)
            self.model.encoder.load_state_dict(ckpt["model"])
            self.model.proj.load_state_dict(ckpt["classifier"])

    # -- the loop -----------------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        cfg = self.cfg
        resumed = self.resume()
        self.log.start(self.step if resumed else 0)
        if self.dist.is_main:
            atomic_write_text(self.run_dir / "config.yaml", yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))
        sizes = ", ".join(f"{s}.{lg} {len(ex)}" for (s, lg), ex in self.data.items())
        self.log.info(f"fine-tuning {cfg.model.path} ({self.pretrained.source}) on {cfg.data.path}: {sizes}; "
                      f"{self.max_steps} steps ({self.steps_per_epoch} per epoch), train {cfg.data.train_langs}")
        eval_every = cfg.train.eval_every or self.steps_per_epoch
        metric = cfg.train.validation_metric
        t0, acc_loss, acc_acc, k = time.time(), 0.0, 0.0, 0
        while self.step < self.max_steps:
            out = self.train_step()
            acc_loss, acc_acc, k = acc_loss + out["loss"], acc_acc + out["acc"], k + 1
            if self.step % cfg.run.log_every == 0 or self.step == self.max_steps:
                rec = {"loss": acc_loss / k, "acc": acc_acc / k, "lr": out["lr"], "grad_norm": out["grad_norm"],
                       "epoch": self.step / self.steps_per_epoch, "s": time.time() - t0}
                self.log.record("train", self.step, rec)
                self.log.info(f"step {self.step}/{self.max_steps} | loss {rec['loss']:.4f} | acc {rec['acc']:.1f} "
                              f"| lr {rec['lr']:.2e} | gnorm {rec['grad_norm']:.2f}")
                acc_loss, acc_acc, k = 0.0, 0.0, 0
            if self.step % eval_every == 0 or self.step == self.max_steps:
                metrics = self.evaluate(("valid",))
                self.log.record("eval", self.step, metrics)
                self.log.info(f"step {self.step} valid: " + _row(metrics, "valid", cfg.data.langs))
                if metric not in metrics:
                    raise XLMError(f"train.validation_metric: {metric!r} is not computed; choose one of "
                                   f"{', '.join(metrics)}")
                if self.best is None or metrics[metric] > self.best:
                    self.best = metrics[metric]
                    self.ckpt.save_best({**self._payload(), "metrics": metrics})
                    self.log.info(f"new best {metric} = {self.best:.2f}: saved {self.ckpt.best_path}")
                self.save()
        self._load_best()
        final = self.evaluate(("valid", "test"))
        self.log.record("eval", self.step, {"final": True, **final})
        table = results_table(final, cfg.data.langs, cfg.data.train_langs)
        for line in table.splitlines():
            self.log.info(line)
        result = {"train_langs": cfg.data.train_langs, "langs": cfg.data.langs, "metrics": final, "table": table}
        if self.dist.is_main:
            atomic_write_text(self.run_dir / "results.json", json.dumps(result, indent=2) + "\n")
        self.log.close()
        return result


def _row(metrics: dict[str, float], split: str, langs: list[str]) -> str:
    cells = " ".join(f"{lg} {metrics[f'{split}_{lg}_acc']:.1f}" for lg in langs)
    return f"{cells} | avg {metrics[f'{split}_acc']:.1f}"


def results_table(metrics: dict[str, float], langs: list[str], train_langs: list[str]) -> str:
    """The XNLI paper's layout: one row per split, a column per language, then the average."""
    mode = "zero-shot" if len(train_langs) == 1 else "translate-train-all"
    head = f"| {mode} (train {','.join(train_langs)}) | " + " | ".join(langs) + " | avg |"
    lines = [head, "|" + "---|" * (len(langs) + 2)]
    for split in ("valid", "test"):
        if f"{split}_acc" in metrics:
            cells = [f"{metrics[f'{split}_{lg}_acc']:.1f}" for lg in langs] + [f"{metrics[f'{split}_acc']:.1f}"]
            lines.append(f"| {split} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def finetune(cfg: FinetuneConfig) -> dict[str, Any]:
    return Finetuner(cfg).train()
