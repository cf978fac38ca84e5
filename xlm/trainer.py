"""The pretraining loop: data -> objectives -> model -> one optimizer update per step; eval, checkpoints, resume.

A step draws its tasks (see :mod:`xlm.objectives`), runs ``accumulate_gradients`` micro-batches of
each, backpropagates ``lambda * loss / accumulate_gradients`` one task at a time, clips, and makes
one optimizer update. Every ``eval_every`` steps it evaluates (and keeps ``best.pt``), every
``save_every`` steps it writes a checkpoint; restarting the same command resumes from the newest one.

Exact resume: all randomness is drawn from generators seeded by ``(seed, rank, step, ...)``
(:mod:`xlm.data.sampling`) -- task draws, masking, dropout (torch's generator is re-seeded at every
step) -- and the samplers' ``(epoch, position)`` are saved, so a resumed run replays the same
batches, masks and dropout as an uninterrupted one and ends with bit-identical parameters (CPU).

The trainer knows nothing of the model's internals: it calls the model's forward and ``predict``
(through :class:`LossModule`, the module DDP/FSDP wrap).

Several processes (torchrun or ``srun``; see ``docs/distributed.md``): every rank builds the same
model and draws the same tasks; stream batches are disjoint parts of one global batch
(:class:`xlm.data.datasets.StreamSampler`); the model runs wrapped in DDP (or FSDP2), with
gradient reduction only on the last backward of a step (``no_sync`` before). Each task's loss is
the sum of cross-entropies divided by the number of predicted tokens of that task over *all* ranks
and micro-batches (all-reduced before the first backward), so an update does not depend on how the
global batch is split. Metrics, the non-finite flag and the stop flag (SIGTERM/SIGUSR1) are
all-reduced once per step; only rank 0 writes; checkpoints keep every rank's sampler and RNG state.
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
import torch.nn.functional as F
from torch import nn

from xlm.checkpoint import CheckpointManager, model_payload, rng_state, set_rng_state
from xlm.config import Config, ModelConfig, config_from_dict, dump_config, to_dict
from xlm.data import provenance
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
from xlm.distributed import (
    DistInfo,
    StopSignal,
    all_gather_objects,
    all_reduce_max,
    all_reduce_sums,
    barrier,
    get_dist_info,
    init_distributed,
    is_fsdp,
    memory_bytes,
    no_grad_sync,
    peak_flops,
    pick_device,
    request_slurm_requeue,
    wrap_model,
)
from xlm.errors import XLMError
from xlm.evaluation import Evaluator, metric_names
from xlm.io import atomic_write_text
from xlm.logging import RunLogger, format_eval_lines, format_train_line
from xlm.model.transformer import TransformerModel
from xlm.objectives import Batch, Masker, Task, TaskDrawer, make_batch, parse_tasks
from xlm.optim import LRScheduler, build_optimizer, clip_grad_norm
from xlm.precision import RoundingMasker, make_scaler
from xlm.precision import autocast as precision_autocast

# Keys of the config that may change when a run is resumed (everything else must match).
RESUMABLE_CHANGES = ("run.dir", "run.log_every", "run.tensorboard", "run.debug", "train.max_steps", "train.eval_every",
                     "train.save_every", "train.keep_last", "train.early_stopping_patience", "train.nan_tolerance",
                     "train.eval_max_sentences", "train.eval_at_start", "train.precision", "train.compile",
                     "train.parallelism", "train.peak_tflops", "data.path")


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
    text_settings: dict[str, Any] | None = None  # how raw text was prepared (xlm.data.provenance)
    warnings: list[str] = field(default_factory=list)


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
    text_settings, warnings = provenance.for_training(root, d.preprocess, any(w.endswith("@@") for w in full.id2word))
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
    return TrainingData(dico, lang2id, bpe_codes, sources, sizes, eval_sets, text_settings, warnings)


# -- training state -------------------------------------------------------------------------------
@dataclass
class TrainState:
    """Counters saved in every checkpoint (plain numbers, so they load with weights_only)."""

    step: int = 0
    updates: int = 0
    tokens: int = 0  # input tokens processed (all ranks)
    best_metric: float | None = None
    best_step: int = -1
    bad_evals: int = 0  # evaluations since the last improvement (early stopping)
    nan_streak: int = 0
    train_seconds: float = 0.0
    overflow_steps: int = 0  # fp16: steps skipped by the loss scaler (gradient overflow)
    world_size: int = 1  # of the run that wrote the checkpoint


class LossModule(nn.Module):
    """What DDP/FSDP wrap: runs the model *and* its output layer in ``forward`` (every parameter a step
    uses is used inside the wrapped call). ``module(batch)`` returns the fp32 *sum* of cross-entropies
    over the batch's predicted tokens; ``module(x, lengths=..., ...)`` is the model's forward, and
    ``predict`` the model's output layer, so evaluation code can call it like the bare model."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.module = model

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        if len(args) == 1 and not kwargs and isinstance(args[0], Batch):
            b = args[0]
            h = self.module(b.x, lengths=b.lengths, langs=b.langs, positions=b.positions, causal=b.causal)
            scores = self.module.predict(h[b.pred_mask])
            return F.cross_entropy(scores.float(), b.targets, reduction="sum")
        return self.module(*args, **kwargs)

    def predict(self, h: torch.Tensor) -> torch.Tensor:
        return self.module.predict(h)


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
        self.device = pick_device(self.dist)
        if cfg.train.precision == "fp16" and self.device.type != "cuda":
            raise XLMError("train.precision: fp16 needs a CUDA device; use bf16 or fp32 on CPU")
        init_distributed(self.dist, self.device)
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
        # fp16: predicted counts rounded to a multiple of 8 in training (evaluation scores every selected token).
        self.train_masker = (RoundingMasker(cfg.objectives, n_words, self.data.dictionary.counts)
                             if cfg.train.precision == "fp16" else self.masker)
        self.drawer = TaskDrawer.from_config(cfg.objectives, self.data.sizes, cfg.data.lg_sampling_factor)
        # Evaluation deals batches to ranks; under FSDP2 every forward is a collective, so there every rank
        # scores every batch (the summed counts are world_size times larger; the metrics are ratios).
        fsdp = cfg.train.parallelism == "fsdp" and self.dist.distributed
        self.evaluator = Evaluator(self.tasks, self.data.eval_sets, self.masker, cfg.data.batch_size, cfg.run.seed,
                                   cfg.objectives.context_size, 0 if fsdp else self.dist.rank,
                                   1 if fsdp else self.dist.world_size)

        torch.manual_seed(torch_seed(cfg.run.seed))  # same initial weights on every rank
        self.model = TransformerModel(cfg.model, n_words, len(cfg.data.langs)).to(self.device)
        # self.wrapped: DDP / FSDP2 around the loss module (the loss module itself with one process);
        # self.train_model: what a training step calls (compiled when train.compile).
        blocks = [*self.model.attentions, *self.model.ffns]
        self.wrapped = wrap_model(LossModule(self.model), cfg.train.parallelism, self.device, blocks)
        self.fsdp = is_fsdp(self.wrapped)
        self.train_model = torch.compile(self.wrapped) if cfg.train.compile else self.wrapped
        # Evaluation runs the bare model (DDP shares its parameters); under FSDP2 it goes through the root.
        self.eval_model = self.wrapped if self.fsdp else self.model
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.scheduler = LRScheduler(self.optimizer, cfg.optim, cfg.train.max_steps)
        self.scaler = make_scaler(self.device, cfg.train.precision)
        self.state = TrainState(world_size=self.dist.world_size)
        self.stop_signal = StopSignal()
        self.preempted: str | None = None  # the signal that stopped the run, if one did
        # Per-device peak FLOP/s for MFU: train.peak_tflops, else known GPUs from a table, else none (no MFU).
        self.peak = cfg.train.peak_tflops * 1e12 if cfg.train.peak_tflops > 0 else peak_flops(
            self.device, cfg.train.precision)
        # The run folder is created only once everything above checked out.
        self.run_dir = Path(cfg.run.dir)
        self.log = RunLogger(self.run_dir, cfg.run.tensorboard, self.dist.is_main, cfg.run.debug)
        self.ckpt = CheckpointManager(self.run_dir / "checkpoints", cfg.train.keep_last, self.dist.is_main)

    # -- precision ------------------------------------------------------------------------------
    def autocast(self) -> contextlib.AbstractContextManager:
        return precision_autocast(self.device, self.cfg.train.precision)

    # -- one step -------------------------------------------------------------------------------
    def train_step(self) -> dict[str, Any]:
        """One optimizer update (``accumulate_gradients`` micro-batches of every drawn task, on every rank)."""
        cfg, st = self.cfg, self.state
        torch.manual_seed(torch_seed(cfg.run.seed, TAG_DROPOUT, self.dist.rank, st.step))  # dropout
        drawn = self.drawer.draw(st.step, rng(cfg.run.seed, TAG_OBJECTIVES, st.step))  # same on every rank
        self.optimizer.zero_grad(set_to_none=True)
        out = self._forward_backward(drawn)
        finite = out["finite"]
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
        """Backpropagate ``lambda * (sum of cross-entropies) / (predicted tokens of the task, all ranks)``.

        Every micro-batch of the step is built first (cheap: token ids), the predicted-token count of
        each drawn task is summed over micro-batches and ranks (one all-reduce), then the batches are
        run one at a time, gradients reduced across ranks only on the last backward. DDP/FSDP average
        gradients over ranks, hence the factor ``world_size``. Losses, token counts, the non-finite
        flag and the stop flag are then summed over ranks in a second single all-reduce.
        """
        cfg, step = self.cfg, self.state.step
        world = self.dist.world_size
        plan: list[tuple[int, Task, float, Batch]] = []
        local = defaultdict(float)
        for micro in range(cfg.train.accumulate_gradients):
            for j, (task, weight) in enumerate(drawn):
                raw = self.data.sources[task].next()
                gen = rng(cfg.run.seed, TAG_MASK, self.dist.rank, step, micro, j)
                batch = make_batch(task, raw, self.train_masker, gen, cfg.objectives.context_size).to(self.device)
                plan.append((j, task, weight, batch))
                local[f"n{j}"] += batch.n_pred
                local["tokens"] += batch.n_tokens
        counts = all_reduce_sums(dict(local), self.device)
        runnable = [p for p in plan if counts[f"n{p[0]}"] > 0]
        xent = defaultdict(float)
        for i, (j, _task, weight, batch) in enumerate(runnable):
            with no_grad_sync(self.wrapped, sync=i == len(runnable) - 1):
                with self.autocast():
                    value = self.train_model(batch)
                self.scaler.scale(value * (weight * world / counts[f"n{j}"])).backward()
            xent[f"x{j}"] += float(value.detach())
        sums = {**{f"x{j}": xent[f"x{j}"] for j in range(len(drawn))},
                "bad": float(not all(math.isfinite(v) for v in xent.values())),
                "stop": float(self.stop_signal.received is not None)}
        sums = all_reduce_sums(sums, self.device)
        out: dict[str, Any] = {"loss": 0.0, "tasks": defaultdict(list), "tokens": int(counts.get("tokens", 0)),
                               "predicted": 0, "finite": sums["bad"] == 0, "stop": sums["stop"] > 0}
        for j, (task, weight) in enumerate(drawn):
            n = counts[f"n{j}"]
            if n > 0:
                v = sums[f"x{j}"] / n
                out["tasks"][task.name].append(v)
                out["loss"] += weight * v
                out["predicted"] += int(n)
        return out

    def _clip(self) -> float:
        if not self.fsdp:
            return clip_grad_norm(self.params, self.cfg.optim.clip_grad_norm)
        max_norm = self.cfg.optim.clip_grad_norm
        norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm if max_norm > 0 else float("inf"))
        return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)  # DTensor under FSDP2

    def _update(self) -> float:
        """Clip and step; returns the gradient norm before clipping (the update is skipped if not finite).

        The norm is that of the reduced gradients, identical on every rank, so all ranks skip together.
        """
        self.scaler.unscale_(self.optimizer)
        grad_norm = self._clip()
        if not (math.isfinite(grad_norm) or self.scaler.is_enabled()):
            return grad_norm
        scale = self.scaler.get_scale() if self.scaler.is_enabled() else 1.0
        self.scaler.step(self.optimizer)  # with fp16, skips the update itself when gradients overflowed
        self.scaler.update()
        if not self.scaler.is_enabled() or self.scaler.get_scale() >= scale:  # the update happened
            self.scheduler.step()
            self.state.updates += 1
        else:
            self.state.overflow_steps += 1
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
        metrics = self.evaluator.evaluate(self.eval_model, self.device, self.autocast)
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
        payload = model_payload(self.model, self.cfg.model, self.data.lang2id, self.data.dictionary, self.cfg,
                                self.data.bpe_codes, self.state.step, self.data.text_settings)
        if self.fsdp:  # sharded DTensors: gather full tensors (a collective: every rank calls this)
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

            payload["model"] = get_model_state_dict(
                self.wrapped, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
            payload["model"] = {k.removeprefix("module."): v for k, v in payload["model"].items()}
        return payload

    def _optimizer_state(self) -> dict[str, Any]:
        if not self.fsdp:
            return self.optimizer.state_dict()
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        return get_optimizer_state_dict(self.wrapped, self.optimizer,
                                        options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    def save(self) -> Path:
        """Write a training checkpoint (rank 0 writes; every rank must call this: it gathers per-rank state)."""
        per_rank = all_gather_objects({
            "samplers": {t.name: s.sampler.state_dict() for t, s in self.data.sources.items()},
            "rng": rng_state(),
        })
        payload = self._model_payload()
        payload.update({
            "optimizer": self._optimizer_state(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "train_state": asdict(self.state),
            # One entry per rank: each rank reads its own shard in its own order.
            "samplers": [r["samplers"] for r in per_rank],
            "rng": [r["rng"] for r in per_rank],
        })
        path = self.ckpt.save(payload, self.state.step)
        barrier()
        self.log.info(f"saved checkpoint {path}")
        return path

    def resume(self) -> bool:
        """Restore everything from the newest checkpoint of the run folder, if there is one."""
        self.ckpt.remove_stale_temporaries()
        barrier()  # (rank 0 may be deleting temporaries)
        found = self.ckpt.load_latest()
        if found is None:
            return False
        ckpt, path = found
        self._check_compatible(ckpt, path)
        by_name = any(isinstance(k, str) for k in ckpt["optimizer"].get("state", {}))  # FSDP's optimizer layout
        if by_name != self.fsdp:
            raise XLMError(f"{path}: the optimizer state was saved {'with' if by_name else 'without'} FSDP "
                           f"(multi-process train.parallelism=fsdp); resume it {'with' if by_name else 'without'} "
                           "FSDP too")
        if self.fsdp:
            from torch.distributed.checkpoint.state_dict import (
                StateDictOptions,
                set_model_state_dict,
                set_optimizer_state_dict,
            )

            opts = StateDictOptions(full_state_dict=True)
            set_model_state_dict(self.wrapped, {f"module.{k}": v for k, v in ckpt["model"].items()}, options=opts)
            set_optimizer_state_dict(self.wrapped, self.optimizer, ckpt["optimizer"], options=opts)
        else:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt["scaler"] and self.scaler.is_enabled():  # empty when saved without fp16
            self.scaler.load_state_dict(ckpt["scaler"])
        self.state = TrainState(**ckpt["train_state"])
        saved_world = len(ckpt["samplers"])
        if saved_world != self.dist.world_size:
            self.log.warning(f"resuming a run of {saved_world} process(es) with {self.dist.world_size}: the data "
                             "order restarts differently (the model, optimizer and schedule continue exactly)")
        self.state.world_size = self.dist.world_size
        rank = self.dist.rank
        samplers = ckpt["samplers"][rank] if rank < saved_world and saved_world == self.dist.world_size else {}
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
        # data.preprocess only says how the text was prepared (recorded in checkpoints): stating it later is fine
        blocking = [k for k in changed if k not in RESUMABLE_CHANGES and not k.startswith("data.preprocess.")]
        if blocking:
            detail = ", ".join(f"{k}: {before.get(k)!r} -> {after.get(k)!r}" for k in blocking[:5])
            raise XLMError(f"{path}: cannot resume: the config differs from the checkpoint's ({detail}); "
                           f"use a new run.dir or restore these values")
        for k in changed:
            self.log.info(f"config change on resume: {k}: {before.get(k)!r} -> {after.get(k)!r}")
        if ModelConfig(**ckpt["model_config"]) != self.cfg.model:
            raise XLMError(f"{path}: model config differs from the checkpoint's")
        words = ckpt.get("dictionary", {}).get("words")
        if words is not None and list(words) != self.data.dictionary.id2word:
            raise XLMError(f"{path}: the model was built for another vocabulary ({len(words)} words) than the data "
                           f"in {self.cfg.data.path} ({len(self.data.dictionary)} words): binarize the data with "
                           f"the checkpoint's vocabulary, or use a new run.dir")

    # -- the loop -------------------------------------------------------------------------------
    def train(self) -> dict[str, float]:
        """Train to ``train.max_steps`` (or early stop); returns the last evaluation's metrics."""
        cfg, st = self.cfg, self.state
        self.stop_signal.install()
        try:
            resumed = self.resume()
            st = self.state
            if self.dist.is_main:
                atomic_write_text(self.run_dir / "config.yaml", dump_config(cfg))
            self.log.start(st.step)
            for warning in self.data.warnings:
                self.log.warning(f"WARNING: {warning}")
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
                if out["stop"] and not (last or stop):  # SIGTERM / SIGUSR1 on some rank: save and leave
                    if interval.steps:
                        self._log_interval(interval)
                    self.save()
                    self._preempt()
                    return metrics
                if st.step % cfg.train.save_every == 0 or last or stop:
                    self.save()
                if stop:
                    break
            self.log.info(f"done at step {st.step} ({st.train_seconds:.1f} s of training)")
            return metrics
        finally:
            self.stop_signal.uninstall()
            self.log.close()

    def _preempt(self) -> None:
        sig = self.stop_signal.received or "a signal on another rank"
        self.preempted = sig
        requeued = False
        if self.dist.is_main and sig == "SIGUSR1" and self.dist.launcher == "slurm":
            requeued = request_slurm_requeue()
        self.log.info(f"stopped by {sig} at step {self.state.step}: checkpoint saved; rerun the same command to "
                      f"resume{' (SLURM job requeued)' if requeued else ''}")

    def _log_interval(self, iv: _Interval) -> None:
        st = self.state
        world = self.dist.world_size
        tps = iv.tokens / max(iv.seconds, 1e-9)  # all ranks
        values = {
            "loss": iv.loss / max(iv.steps, 1),
            "lr": self.scheduler.lr,
            "grad_norm": iv.grad_norm / max(iv.steps, 1),
            "tokens_per_s": tps,
            "tokens_per_s_per_device": tps / world,
            "predicted_per_s": iv.predicted / max(iv.seconds, 1e-9),
            "updates": st.updates,
            "tokens": st.tokens,
            "memory_gb": all_reduce_max(memory_bytes(self.device), self.device) / 2**30,  # the largest rank's
        }
        if self.peak:
            fpt = self.model.flops_per_token(self.cfg.data.bptt, iv.predicted / max(iv.tokens, 1))
            values["mfu"] = fpt * tps / world / self.peak
        if self.scaler.is_enabled():
            values["loss_scale"] = self.scaler.get_scale()
            values["overflow_steps"] = st.overflow_steps
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

