"""The pretraining loop: data -> objectives -> model -> one optimizer update per step; eval, checkpoints, resume.

A step draws its tasks (see :mod:`xlm.objectives`), runs ``accumulate_gradients`` micro-batches of
each, backpropagates ``lambda * loss / accumulate_gradients`` one task at a time, clips, and makes
one optimizer update. Every ``eval_every`` steps it evaluates (and keeps ``best.pt``), every
``save_every`` steps it writes a checkpoint; restarting the same command resumes from the newest one.

Exact resume: all randomness is drawn from generators seeded by ``(seed, rank, step, ...)``
(:mod:`xlm.data.sampling`) -- task draws, masking, dropout (torch's generator is re-seeded at every
step) -- and the samplers' ``(epoch, position)`` are saved, so a resumed run replays the same
batches, masks and dropout as an uninterrupted one and ends with bit-identical parameters (CPU).

The trainer knows nothing of the model's internals: it calls ``objectives.loss(model, batch)``.

Multi-process runs are refused for now; the pieces they need are in place: datasets shard by rank,
task draws are rank-independent (every rank runs the same graph), evaluation deals batches to ranks
with rank-independent masks and sums through :func:`xlm.distributed.all_reduce_sums`, checkpoints
keep ``samplers``/``rng`` as per-rank lists, and ``self.train_model`` is the module to wrap (DDP's
``no_sync`` around every backward of a step but the last).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from xlm.checkpoint import CheckpointManager, model_payload, rng_state, set_rng_state
from xlm.config import Config, ModelConfig, config_from_dict, dump_config, to_dict
from xlm.data.datasets import (
    ParallelDataset,
    ParallelSampler,
    RawBatch,
    StreamDataset,
    StreamSampler,
    mono_prefix,
    open_corpus,
    para_prefix,
)
from xlm.data.dictionary import Dictionary
from xlm.data.indexed import IndexedDataset
from xlm.data.sampling import TAG_DROPOUT, TAG_MASK, TAG_OBJECTIVES, rng, torch_seed
from xlm.distributed import DistInfo, barrier, get_dist_info, init_distributed, pick_device
from xlm.errors import XLMError
from xlm.evaluation import Evaluator, metric_names
from xlm.io import atomic_write_text
from xlm.logging import RunLogger, format_eval_lines, format_train_line
from xlm.model.transformer import TransformerModel
from xlm.objectives import Masker, Task, TaskDrawer, loss, make_batch, parse_tasks
from xlm.optim import LRScheduler, build_optimizer, clip_grad_norm

# Keys of the config that may change when a run is resumed (everything else must match).
RESUMABLE_CHANGES = ("run.dir", "run.log_every", "run.tensorboard", "run.debug", "train.max_steps", "train.eval_every",
                     "train.save_every", "train.keep_last", "train.early_stopping_patience", "train.nan_tolerance",
                     "train.eval_max_sentences", "train.eval_at_start", "train.precision", "train.compile",
                     "train.parallelism", "data.path")


# -- data wiring ----------------------------------------------------------------------------------
class TaskSource:
    """Training batches of one task: a dataset read in the order of its sampler."""

    def __init__(self, dataset: StreamDataset | ParallelDataset, sampler: StreamSampler | ParallelSampler):
        self.dataset, self.sampler = dataset, sampler

    def next(self) -> RawBatch:
        idx = next(self.sampler)
        if isinstance(self.dataset, StreamDataset):
            return self.dataset.windows(idx)
        return self.dataset.pairs(idx)


@dataclass
class TrainingData:
    dictionary: Dictionary
    lang2id: dict[str, int]
    bpe_codes: str | None
    sources: dict[Task, TaskSource]
    sizes: dict[Task, int]
    eval_sets: dict[tuple[str, Task], StreamDataset | ParallelDataset] = field(default_factory=dict)


def load_data(cfg: Config, tasks: list[Task], dist: DistInfo) -> TrainingData:
    """Open every corpus the tasks need (memory-mapped) and build samplers for this rank."""
    d = cfg.data
    root = Path(d.path)
    if not d.path or not root.is_dir():
        raise XLMError(f"data.path: {d.path!r} is not a folder (run preprocess first)")
    vocab = root / "vocab"
    full = Dictionary.read_vocab(vocab)
    dico = Dictionary.read_vocab(vocab, d.max_vocab, d.min_count) if d.max_vocab > 0 or d.min_count > 0 else full
    codes = root / "codes"
    bpe_codes = codes.read_text(encoding="utf-8") if codes.is_file() else None
    lang2id = {lang: i for i, lang in enumerate(d.langs)}
    n_words = len(dico)
    opened: dict[Path, IndexedDataset] = {}

    def corpus(prefix: Path) -> IndexedDataset:
        if prefix not in opened:
            opened[prefix] = open_corpus(prefix, len(full), full.fingerprint())
        return opened[prefix]

    def dataset(split: str, task: Task, max_sentences: int, max_len: int) -> StreamDataset | ParallelDataset:
        if not task.is_pair:
            return StreamDataset(corpus(mono_prefix(root, split, task.lang1)), d.bptt, n_words,
                                 lang2id[task.lang1], max_sentences)
        c1 = corpus(para_prefix(root, split, task.lang1, task.lang2, task.lang1))
        c2 = corpus(para_prefix(root, split, task.lang1, task.lang2, task.lang2))
        return ParallelDataset(c1, c2, n_words, lang2id[task.lang1], lang2id[task.lang2], max_len, max_sentences)

    longest = cfg.model.max_positions - 2  # each half of a pair is </s> s </s> with positions from 0
    train_max_len = min(d.max_len, longest) if d.max_len > 0 else longest
    sources, sizes, eval_sets = {}, {}, {}
    for task in tasks:
        ds = dataset("train", task, -1, train_max_len)
        if isinstance(ds, StreamDataset):
            sampler = StreamSampler(len(ds), d.batch_size, cfg.run.seed, dist.rank, dist.world_size, task.name)
            sizes[task] = len(ds.data)
        else:
            if len(ds) == 0:
                raise XLMError(f"data.max_len: no pair of train.{task.lang1}-{task.lang2} has both sides within "
                               f"{train_max_len} tokens")
            sampler = ParallelSampler(ds.lengths, d.batch_size, d.tokens_per_batch, d.max_batch_size, d.group_by_size,
                                      cfg.run.seed, dist.rank, dist.world_size, task.name)
            sizes[task] = len(ds)
        sources[task] = TaskSource(ds, sampler)
        for split in ("valid", "test"):
            eval_sets[(split, task)] = dataset(split, task, cfg.train.eval_max_sentences, longest)
    return TrainingData(dico, lang2id, bpe_codes, sources, sizes, eval_sets)


# -- training state -------------------------------------------------------------------------------
@dataclass
class TrainState:
    """Counters saved in every checkpoint (plain numbers, so they load with weights_only)."""

    step: int = 0
    updates: int = 0
    tokens: int = 0  # input tokens processed on this rank
    best_metric: float | None = None
    best_step: int = -1
    bad_evals: int = 0  # evaluations since the last improvement (early stopping)
    nan_streak: int = 0
    train_seconds: float = 0.0


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


class Trainer:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.dist = get_dist_info()
        if self.dist.distributed:
            raise XLMError(f"{self.dist.world_size} processes: multi-process training (DDP/FSDP) is not "
                           "implemented yet; run a single process")
        self.device = pick_device(self.dist)
        init_distributed(self.dist, self.device)
        if cfg.train.precision == "fp16" and self.device.type != "cuda":
            raise XLMError("train.precision: fp16 needs a CUDA device; use bf16 or fp32 on CPU")
        self.tasks = parse_tasks(cfg.objectives)
        if not self.tasks:
            raise XLMError("objectives: nothing to train (set objectives.mlm and/or objectives.clm)")
        self.metric_names = metric_names(self.tasks)
        vm = cfg.train.validation_metric
        if vm and vm.lstrip("_") not in self.metric_names:
            raise XLMError(f"train.validation_metric: {vm!r} is not computed by this run; choose one of "
                           f"{', '.join(self.metric_names)} (a leading '_' means lower is better)")

        self.data = load_data(cfg, self.tasks, self.dist)
        n_words = len(self.data.dictionary)
        self.masker = Masker(cfg.objectives, n_words, self.data.dictionary.counts)
        self.drawer = TaskDrawer.from_config(cfg.objectives, self.data.sizes, cfg.data.lg_sampling_factor)
        self.evaluator = Evaluator(self.tasks, self.data.eval_sets, self.masker, cfg.data.batch_size, cfg.run.seed,
                                   cfg.objectives.context_size, self.dist.rank, self.dist.world_size)

        torch.manual_seed(torch_seed(cfg.run.seed))  # same initial weights on every rank
        self.model = TransformerModel(cfg.model, n_words, len(cfg.data.langs)).to(self.device)
        self.train_model = torch.compile(self.model) if cfg.train.compile else self.model
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.scheduler = LRScheduler(self.optimizer, cfg.optim, cfg.train.max_steps)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.train.precision == "fp16")
        self.state = TrainState()
        # The run folder is created only once everything above checked out.
        self.run_dir = Path(cfg.run.dir)
        self.log = RunLogger(self.run_dir, cfg.run.tensorboard, self.dist.is_main, cfg.run.debug)
        self.ckpt = CheckpointManager(self.run_dir / "checkpoints", cfg.train.keep_last, self.dist.is_main)

    # -- precision ------------------------------------------------------------------------------
    def autocast(self) -> contextlib.AbstractContextManager:
        p = self.cfg.train.precision
        if p == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16 if p == "bf16" else torch.float16)

    # -- one step -------------------------------------------------------------------------------
    def train_step(self) -> dict[str, Any]:
        """One optimizer update (``accumulate_gradients`` micro-batches of every drawn task)."""
        cfg, st = self.cfg, self.state
        torch.manual_seed(torch_seed(cfg.run.seed, TAG_DROPOUT, self.dist.rank, st.step))  # dropout
        drawn = self.drawer.draw(st.step, rng(cfg.run.seed, TAG_OBJECTIVES, st.step))  # same on every rank
        self.optimizer.zero_grad(set_to_none=True)
        out = self._forward_backward(drawn)
        finite = all(math.isfinite(v) for values in out["tasks"].values() for v in values)
        out["grad_norm"] = float("nan")
        if finite and out["tasks"]:  # (no task at all when every lambda is 0 at this step)
            out["grad_norm"] = self._update()
            finite = math.isfinite(out["grad_norm"]) or self.scaler.is_enabled()
        self._check_divergence(finite)
        st.step += 1
        st.tokens += out["tokens"]
        out["tasks"] = {k: sum(v) / len(v) for k, v in out["tasks"].items()}
        return out

    def _forward_backward(self, drawn: list[tuple[Task, float]]) -> dict[str, Any]:
        """Backpropagate ``lambda * loss / accumulate_gradients`` of each task's batch, one at a time."""
        cfg, step = self.cfg, self.state.step
        accum = cfg.train.accumulate_gradients
        out: dict[str, Any] = {"loss": 0.0, "tasks": defaultdict(list), "tokens": 0, "predicted": 0}
        for micro in range(accum):
            for j, (task, weight) in enumerate(drawn):
                raw = self.data.sources[task].next()
                gen = rng(cfg.run.seed, TAG_MASK, self.dist.rank, step, micro, j)
                batch = make_batch(task, raw, self.masker, gen, cfg.objectives.context_size).to(self.device)
                out["tokens"] += batch.n_tokens
                if batch.n_pred == 0:
                    continue
                with self.autocast():
                    value = loss(self.train_model, batch)
                self.scaler.scale(value * (weight / accum)).backward()
                v = float(value.detach())
                out["tasks"][task.name].append(v)
                out["loss"] += weight * v / accum
                out["predicted"] += batch.n_pred
        return out

    def _update(self) -> float:
        """Clip and step; returns the gradient norm before clipping (the update is skipped if not finite)."""
        self.scaler.unscale_(self.optimizer)
        grad_norm = clip_grad_norm(self.params, self.cfg.optim.clip_grad_norm)
        if not (math.isfinite(grad_norm) or self.scaler.is_enabled()):
            return grad_norm
        scale = self.scaler.get_scale() if self.scaler.is_enabled() else 1.0
        self.scaler.step(self.optimizer)  # with fp16, skips the update itself when gradients overflowed
        self.scaler.update()
        if not self.scaler.is_enabled() or self.scaler.get_scale() >= scale:  # the update happened
            self.scheduler.step()
            self.state.updates += 1
        return grad_norm

    def _check_divergence(self, finite: bool) -> None:
        st, tolerance = self.state, self.cfg.train.nan_tolerance
        if finite:
            st.nan_streak = 0
            return
        self.optimizer.zero_grad(set_to_none=True)
        st.nan_streak += 1
        self.log.warning(f"step {st.step}: non-finite loss or gradient, update skipped "
                         f"({st.nan_streak} in a row; tolerance {tolerance})")
        if st.nan_streak > tolerance:
            raise XLMError(f"training diverged: {st.nan_streak} consecutive steps with a non-finite loss or "
                           "gradient (lower optim.lr, raise optim.warmup_updates, or use fp32)")

    # -- evaluation -----------------------------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        metrics = self.evaluator.evaluate(self.train_model, self.device, self.autocast)
        for line in format_eval_lines(self.state.step, metrics):
            self.log.info(line)
        self.log.record("eval", self.state.step, metrics)
        return metrics

    def _update_best(self, metrics: dict[str, float]) -> bool:
        """Save ``best.pt`` on improvement; returns True when early stopping says stop."""
        vm, st = self.cfg.train.validation_metric, self.state
        if not vm:
            return False
        value = metrics[vm.lstrip("_")]
        lower = vm.startswith("_")
        if st.best_metric is None or (value < st.best_metric if lower else value > st.best_metric):
            st.best_metric, st.best_step, st.bad_evals = value, st.step, 0
            self.ckpt.save_best({**self._model_payload(), "metrics": metrics})
            self.log.info(f"new best {vm.lstrip('_')} = {value:.4f}: saved {self.ckpt.best_path}")
            return False
        st.bad_evals += 1
        patience = self.cfg.train.early_stopping_patience
        if patience > 0 and st.bad_evals > patience:
            self.log.info(f"early stopping: {vm.lstrip('_')} has not improved on {st.best_metric:.4f} "
                          f"(step {st.best_step}) for {st.bad_evals} evaluations")
            return True
        return False

    # -- checkpoints ----------------------------------------------------------------------------
    def _model_payload(self) -> dict[str, Any]:
        return model_payload(self.model, self.cfg.model, self.data.lang2id, self.data.dictionary, self.cfg,
                             self.data.bpe_codes, self.state.step)

    def save(self) -> Path:
        payload = self._model_payload()
        payload.update({
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "train_state": asdict(self.state),
            # One entry per rank: each rank reads its own shard in its own order.
            "samplers": [{t.name: s.sampler.state_dict() for t, s in self.data.sources.items()}],
            "rng": [rng_state()],
        })
        path = self.ckpt.save(payload, self.state.step)
        barrier()
        self.log.info(f"saved checkpoint {path}")
        return path

    def resume(self) -> bool:
        """Restore everything from the newest checkpoint of the run folder, if there is one."""
        self.ckpt.remove_stale_temporaries()
        found = self.ckpt.load_latest()
        if found is None:
            return False
        ckpt, path = found
        self._check_compatible(ckpt, path)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt["scaler"] and self.scaler.is_enabled():  # empty when saved without fp16
            self.scaler.load_state_dict(ckpt["scaler"])
        self.state = TrainState(**ckpt["train_state"])
        rank = self.dist.rank
        samplers = ckpt["samplers"][rank] if rank < len(ckpt["samplers"]) else {}
        for task, source in self.data.sources.items():
            if task.name in samplers:
                source.sampler.load_state_dict(samplers[task.name])
        set_rng_state(ckpt["rng"][min(rank, len(ckpt["rng"]) - 1)])
        self.log.info(f"resumed from {path} at step {self.state.step}")
        return True

    def _check_compatible(self, ckpt: dict[str, Any], path: Path) -> None:
        try:
            old = config_from_dict(ckpt["config"])
        except XLMError as e:
            raise XLMError(f"{path}: stored config is invalid: {e}") from None
        before, after = _flatten(to_dict(old)), _flatten(to_dict(self.cfg))
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        blocking = [k for k in changed if k not in RESUMABLE_CHANGES]
        if blocking:
            detail = ", ".join(f"{k}: {before.get(k)!r} -> {after.get(k)!r}" for k in blocking[:5])
            raise XLMError(f"{path}: cannot resume: the config differs from the checkpoint's ({detail}); "
                           f"use a new run.dir or restore these values")
        for k in changed:
            self.log.info(f"config change on resume: {k}: {before.get(k)!r} -> {after.get(k)!r}")
        if ModelConfig(**ckpt["model_config"]) != self.cfg.model:
            raise XLMError(f"{path}: model config differs from the checkpoint's")

    # -- the loop -------------------------------------------------------------------------------
    def train(self) -> dict[str, float]:
        """Train to ``train.max_steps`` (or early stop); returns the last evaluation's metrics."""
        cfg, st = self.cfg, self.state
        try:
            resumed = self.resume()
            st = self.state
            if self.dist.is_main:
                atomic_write_text(self.run_dir / "config.yaml", dump_config(cfg))
            self.log.start(st.step)
            if not resumed:
                self._describe()
            metrics: dict[str, float] = {}
            if st.step == 0 and cfg.train.eval_at_start:
                metrics = self.evaluate()
            interval = _Interval()
            self.train_model.train()
            while st.step < cfg.train.max_steps:
                t0 = time.perf_counter()
                out = self.train_step()
                st.train_seconds += time.perf_counter() - t0
                interval.add(out, time.perf_counter() - t0)
                last = st.step == cfg.train.max_steps
                if st.step % cfg.run.log_every == 0 or last:
                    self._log_interval(interval)
                    interval = _Interval()
                stop = False
                if st.step % cfg.train.eval_every == 0 or last:
                    metrics = self.evaluate()
                    stop = self._update_best(metrics)
                if st.step % cfg.train.save_every == 0 or last or stop:
                    self.save()
                if stop:
                    break
            self.log.info(f"done at step {st.step} ({st.train_seconds:.1f} s of training)")
            return metrics
        finally:
            self.log.close()

    def _log_interval(self, iv: _Interval) -> None:
        st = self.state
        values = {
            "loss": iv.loss / max(iv.steps, 1),
            "lr": self.scheduler.lr,
            "grad_norm": iv.grad_norm / max(iv.steps, 1),
            "tokens_per_s": iv.tokens / max(iv.seconds, 1e-9),
            "predicted_per_s": iv.predicted / max(iv.seconds, 1e-9),
            "updates": st.updates,
            "tokens": st.tokens,
        }
        tasks = {k: sum(v) / len(v) for k, v in sorted(iv.tasks.items())}
        self.log.info(format_train_line(st.step, self.cfg.train.max_steps, values, tasks))
        self.log.record("train", st.step, {**values, **{f"loss_{k}": v for k, v in tasks.items()}})

    def _describe(self) -> None:
        m, d = self.model, self.data
        self.log.info(f"run folder {self.run_dir} | device {self.device} | precision {self.cfg.train.precision}")
        self.log.info(f"model: {m.num_parameters() / 1e6:.2f}M parameters, {m.n_layers} layers, dim {m.dim}, "
                      f"{len(d.dictionary)} words, languages {d.lang2id}")
        for task, src in d.sources.items():
            ds = src.dataset
            if isinstance(ds, StreamDataset):
                what = f"{len(ds)} windows of {ds.bptt} tokens from {ds.n_sentences} sentences"
            else:
                what = f"{len(ds)} pairs ({ds.n_dropped} skipped: empty or a side over {ds.max_len} tokens)"
            self.log.info(f"task {task.name}: {what}")


@dataclass
class _Interval:
    steps: int = 0
    loss: float = 0.0
    grad_norm: float = 0.0
    tokens: int = 0
    predicted: int = 0
    seconds: float = 0.0
    tasks: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def add(self, out: dict[str, Any], seconds: float) -> None:
        self.steps += 1
        self.loss += out["loss"]
        self.grad_norm += out["grad_norm"] if math.isfinite(out["grad_norm"]) else 0.0
        self.tokens += out["tokens"]
        self.predicted += out["predicted"]
        self.seconds += seconds
        for k, v in out["tasks"].items():
            self.tasks[k].append(v)

