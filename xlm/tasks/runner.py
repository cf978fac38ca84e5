"""The fine-tuning loop shared by every task: train on some languages, select on validation, test on all.

It reuses the pretraining pieces: AdamW and the learning-rate schedules (:mod:`xlm.optim`; the
encoder at ``optim.lr``, the head at ``head.lr``), atomic checkpoints with resume
(:class:`xlm.checkpoint.CheckpointManager`: ``step-*.pt``, ``latest``, ``best.pt``, which loads
with :func:`xlm.load_pretrained` as a plain encoder and keeps the head beside it), ``train.log`` +
``metrics.jsonl`` (:class:`xlm.logging.RunLogger`), mixed precision (:mod:`xlm.precision`), and
torchrun/SLURM processes (:mod:`xlm.distributed`: each rank takes its share of every batch and of
the evaluation sets; gradients and predictions are gathered). Rerunning a command resumes.

A task (:class:`FinetuneTask`) turns its files into :class:`~xlm.tasks.inputs.Feature` lists,
gives training targets and a loss, and scores the logits of its evaluation features.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as tdist
import yaml
from torch import Tensor

from xlm.checkpoint import CheckpointManager, model_payload, unwrap
from xlm.data.sampling import torch_seed
from xlm.distributed import DistInfo, all_gather_objects, all_reduce_sums, get_dist_info, init_distributed, pick_device
from xlm.errors import XLMError
from xlm.io import atomic_write_text
from xlm.logging import RunLogger
from xlm.precision import autocast, make_scaler
from xlm.tasks import results
from xlm.tasks.heads import TaskModel, finetuned_parameters, freeze_all_but
from xlm.tasks.inputs import Feature, collate


class FinetuneTask:
    """What a task provides to :class:`Finetuner` (see classification.py, tokens.py, qa.py)."""

    name = ""
    kind = "sequence"
    main_metric = "acc"
    table_rows: list[list[str]] = [["acc"]]
    use_langs = True
    labels: list[str] = []

    def __init__(self, cfg: Any):
        self.cfg = cfg
        self.features: dict[tuple[str, str], list[Feature]] = {}

    def n_outputs(self) -> int:
        return len(self.labels)

    def load(self, p: Any, log: RunLogger) -> None:
        """Read and encode every split and language into ``self.features[(split, lang)]``."""
        raise NotImplementedError

    def targets(self, lang: str, idx: list[int]) -> Any:
        raise NotImplementedError

    def loss(self, logits: Tensor, targets: Any) -> Tensor:
        """The summed loss of these examples (divided by :meth:`weight` of the whole batch)."""
        raise NotImplementedError

    def weight(self, items: list[tuple[str, int]]) -> float:
        return float(len(items))

    def score(self, split: str, lang: str, logits: list[np.ndarray]) -> dict[str, float]:
        raise NotImplementedError

    def predictions(self, split: str, lang: str) -> Any:
        """What to write to ``RUN/predictions/{split}.{lang}.json`` after the final evaluation (None: nothing)."""
        return None


class Finetuner:
    def __init__(self, task: FinetuneTask):
        from xlm.optim import LRScheduler, build_optimizer

        cfg = self.cfg = task.cfg
        self.task = task
        self.dist: DistInfo = get_dist_info()
        self.device = pick_device(self.dist)
        init_distributed(self.dist, self.device)
        self.run_dir = Path(cfg.run.dir)
        self.log = RunLogger(self.run_dir, cfg.run.tensorboard, self.dist.is_main, cfg.run.debug)
        self.pretrained = p = cfg.model.load()
        for lang in {*cfg.data.langs, *getattr(cfg.data, "question_langs", {}).values()}:
            if len(p.lang2id) > 1 and lang not in p.lang2id:
                raise XLMError(f"data.langs: {lang!r} is not a language of the model ({', '.join(sorted(p.lang2id))})")
        task.load(p, self.log)
        if ("train", cfg.data.train_langs[0]) not in task.features:
            raise XLMError("data.files: no training split")
        torch.manual_seed(torch_seed(cfg.run.seed, 1))  # the head's initial weights
        self.model = TaskModel(p.model, task.kind, task.n_outputs(), cfg.head.dropout).to(self.device)
        n_trained = freeze_all_but(p.model, finetuned_parameters(p.model, cfg.train.finetune_layers))
        head_scale = (cfg.head.lr or cfg.optim.lr) / cfg.optim.lr
        self.optimizer = build_optimizer([(self.model.encoder, 1.0), (self.model.proj, head_scale)], cfg.optim)
        self.n_train = sum(len(task.features[("train", lg)]) for lg in cfg.data.train_langs)
        self.steps_per_epoch = max(1, math.ceil(self.n_train / cfg.train.batch_size))
        self.max_steps = cfg.train.max_steps if cfg.train.max_steps > 0 else cfg.train.epochs * self.steps_per_epoch
        self.scheduler = LRScheduler(self.optimizer, cfg.optim, self.max_steps)
        self.scaler = make_scaler(self.device, cfg.train.precision)
        self.step = 0
        self.best: float | None = None
        self.ckpt = CheckpointManager(self.run_dir / "checkpoints", cfg.train.keep_last, self.dist.is_main)
        self.log.info(f"{task.name}: {cfg.model.path} ({p.source}); fine-tuning layers {cfg.train.finetune_layers} "
                      f"({n_trained:,} encoder values) and the head (lr x{head_scale:g})")

    # -- data order: every (language, feature) of the training set, shuffled per epoch --------------
    def _batch_items(self, step: int) -> list[tuple[str, int]]:
        epoch, k = divmod(step, self.steps_per_epoch)
        items = [(lg, i) for lg in self.cfg.data.train_langs for i in range(len(self.task.features[("train", lg)]))]
        perm = np.random.default_rng([self.cfg.run.seed, epoch]).permutation(len(items))
        bs = self.cfg.train.batch_size
        return [items[j] for j in perm[k * bs : (k + 1) * bs]]

    def _forward(self, feats: list[Feature]) -> Tensor:
        x, lengths, langs, pos = collate(feats, self.task.use_langs)
        with autocast(self.device, self.cfg.train.precision):
            return self.model(x.to(self.device), lengths.to(self.device),
                              None if langs is None else langs.to(self.device), pos.to(self.device)).float()

    def train_step(self) -> dict[str, float]:
        self.model.train()
        torch.manual_seed(torch_seed(self.cfg.run.seed, self.dist.rank, self.step, 2))  # dropout
        batch = self._batch_items(self.step)
        total = self.task.weight(batch)  # the whole batch's normalizer, known to every rank
        mine = batch[self.dist.rank :: self.dist.world_size]
        self.optimizer.zero_grad(set_to_none=not self.dist.distributed)  # ranks must reduce the same grads
        loss_sum = 0.0
        for lang in dict.fromkeys(lg for lg, _ in mine):
            idx = [i for lg, i in mine if lg == lang]
            logits = self._forward([self.task.features[("train", lang)][i] for i in idx])
            loss = self.task.loss(logits, self.task.targets(lang, idx))
            self.scaler.scale(loss / total).backward()
            loss_sum += float(loss.detach())
        if self.dist.distributed:  # no DDP wrapper: sum the gradients (each already divided by the total)
            for prm in self.model.parameters():
                if prm.grad is not None:
                    tdist.all_reduce(prm.grad)
        from xlm.optim import clip_grad_norm

        self.scaler.unscale_(self.optimizer)
        gnorm = clip_grad_norm([q for q in self.model.parameters() if q.requires_grad], self.cfg.optim.clip_grad_norm)
        lr = self.scheduler.lr
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        sums = all_reduce_sums({"loss": loss_sum}, self.device)
        return {"loss": sums["loss"] / max(total, 1e-12), "lr": lr, "grad_norm": gnorm}

    @torch.no_grad()
    def _logits(self, feats: list[Feature]) -> list[np.ndarray]:
        """Every feature's logits (trimmed to its length for token/span heads), gathered from all ranks."""
        self.model.eval()
        mine = list(range(self.dist.rank, len(feats), self.dist.world_size))
        mine.sort(key=lambda i: len(feats[i]))
        out: list[tuple[int, np.ndarray]] = []
        bs = self.cfg.train.eval_batch_size
        for s in range(0, len(mine), bs):
            idx = mine[s : s + bs]
            logits = self._forward([feats[i] for i in idx]).cpu().numpy()
            for row, i in enumerate(idx):
                out.append((i, logits[row] if self.task.kind == "sequence" else logits[row, : len(feats[i])]))
        gathered = [pair for part in all_gather_objects(out) for pair in part]
        gathered.sort(key=lambda t: t[0])
        return [a for _, a in gathered]

    def evaluate(self, splits: tuple[str, ...]) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for split in splits:
            langs = [lg for lg in self.cfg.data.langs if (split, lg) in self.task.features]
            names: dict[str, None] = {}
            for lang in langs:
                scores = self.task.score(split, lang, self._logits(self.task.features[(split, lang)]))
                metrics.update({f"{split}_{lang}_{k}": v for k, v in scores.items()})
                names.update(dict.fromkeys(scores))
            results.add_averages(metrics, split, langs, list(names))
        return metrics

    # -- checkpoints --------------------------------------------------------------------------------
    def _payload(self) -> dict[str, Any]:
        p = self.pretrained
        out = model_payload(self.model.encoder, unwrap(p.model).cfg, p.lang2id, p.dictionary, self.cfg,
                            p.bpe_codes, self.step, p.text_settings)
        out.update({"causal": False, "task": self.task.name, "head_kind": self.task.kind,
                    "labels": list(self.task.labels), "n_outputs": self.task.n_outputs(),
                    "head": {k: v.detach().cpu() for k, v in self.model.proj.state_dict().items()}})
        return out

    def save(self) -> None:
        payload = self._payload()
        payload.update({"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                        "scaler": self.scaler.state_dict(), "train_state": {"step": self.step, "best": self.best}})
        self.ckpt.save(payload, self.step)

    def resume(self) -> bool:
        self.ckpt.remove_stale_temporaries()
        found = self.ckpt.load_latest()
        if found is None:
            return False
        ckpt, path = found
        if ckpt.get("task") != self.task.name or ckpt.get("labels") != list(self.task.labels):
            raise XLMError(f"{path}: a {ckpt.get('task')} run with labels {ckpt.get('labels')}, the config says "
                           f"{self.task.name} with {self.task.labels}; use a new run.dir")
        self.model.encoder.load_state_dict(ckpt["model"])
        self.model.proj.load_state_dict(ckpt["head"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.step, self.best = int(ckpt["train_state"]["step"]), ckpt["train_state"]["best"]
        self.log.info(f"resumed from {path} (step {self.step})")
        return True

    def _load_best(self) -> None:
        from xlm.serialization import safe_load

        if self.ckpt.best_path.exists():
            ckpt = safe_load(self.ckpt.best_path)
            self.model.encoder.load_state_dict(ckpt["model"])
            self.model.proj.load_state_dict(ckpt["head"])

    # -- the loop -----------------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        cfg, task = self.cfg, self.task
        resumed = self.resume()
        self.log.start(self.step if resumed else 0)
        if self.dist.is_main:
            atomic_write_text(self.run_dir / "config.yaml", yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))
        sizes = ", ".join(f"{s}.{lg} {len(f)}" for (s, lg), f in task.features.items())
        self.log.info(f"data {cfg.data.path}: {sizes}; {self.max_steps} steps ({self.steps_per_epoch} per epoch), "
                      f"train {cfg.data.train_langs}")
        eval_every = cfg.train.eval_every or self.steps_per_epoch
        metric = cfg.train.validation_metric or f"valid_{task.main_metric}"
        t0, acc, k = time.time(), 0.0, 0
        while self.step < self.max_steps:
            out = self.train_step()
            acc, k = acc + out["loss"], k + 1
            if self.step % cfg.run.log_every == 0 or self.step == self.max_steps:
                rec = {"loss": acc / k, "lr": out["lr"], "grad_norm": out["grad_norm"],
                       "epoch": self.step / self.steps_per_epoch, "s": time.time() - t0}
                self.log.record("train", self.step, rec)
                self.log.info(f"step {self.step}/{self.max_steps} | loss {rec['loss']:.4f} | lr {rec['lr']:.2e} "
                              f"| gnorm {rec['grad_norm']:.2f}")
                acc, k = 0.0, 0
            if self.step % eval_every == 0 or self.step == self.max_steps:
                metrics = self.evaluate(("valid",))
                self.log.record("eval", self.step, metrics)
                if metric not in metrics:
                    raise XLMError(f"train.validation_metric: {metric!r} is not computed; choose one of "
                                   f"{', '.join(metrics)}")
                self.log.info(f"step {self.step}: {metric} {metrics[metric]:.2f}")
                if self.best is None or metrics[metric] > self.best:
                    self.best = metrics[metric]
                    self.ckpt.save_best({**self._payload(), "metrics": metrics})
                    self.log.info(f"new best {metric} = {self.best:.2f}: saved {self.ckpt.best_path}")
                self.save()
        self._load_best()
        final = self.evaluate(("valid", "test"))
        self.log.record("eval", self.step, {"final": True, **final})
        mode = "zero-shot" if len(cfg.data.train_langs) == 1 else "translate-train"
        title = f"{task.name} {mode} (train {','.join(cfg.data.train_langs)})"
        text = results.table(final, cfg.data.langs, task.table_rows, title)
        for line in text.splitlines():
            self.log.info(line)
        result = {"task": task.name, "train_langs": cfg.data.train_langs, "langs": cfg.data.langs,
                  "validation_metric": metric, "metrics": final, "table": text}
        if self.dist.is_main:
            results.save(self.run_dir, result)
            for split, lang in task.features:
                preds = task.predictions(split, lang)
                if preds is not None and split != "train":
                    atomic_write_text(self.run_dir / "predictions" / f"{split}.{lang}.json",
                                      json.dumps(preds, ensure_ascii=False) + "\n")
        self.log.close()
        return result
