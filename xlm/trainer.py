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
import dataclasses
import math
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xlm.checkpoint import CheckpointManager, model_payload, rng_state, set_rng_state
from xlm.config import Config, ModelConfig, dump_config
from xlm.corpora import load_data
from xlm.data.datasets import StreamDataset
from xlm.data.sampling import TAG_DROPOUT, TAG_MASK, TAG_OBJECTIVES, rng, torch_seed
from xlm.distributed import (
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
from xlm.eval_original import OriginalEvaluator, original_evaluator
from xlm.evaluation import Evaluator, metric_names
from xlm.initialize import init_embeddings, init_from
from xlm.io import atomic_write_text
from xlm.logging import RunLogger, format_eval_lines, format_train_line
from xlm.model.transformer import TransformerModel
from xlm.objectives import Batch, Masker, Task, TaskDrawer, make_batch, parse_tasks, prepare
from xlm.optim import LRScheduler, build_optimizer, clip_grad_norm
from xlm.precision import RoundingMasker, make_scaler
from xlm.precision import autocast as precision_autocast
from xlm.run_folder import RunLock, check_restart, config_changes, describe_changes, remove_half_made


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
            h = self.module(b.x, **b.inputs())
            scores = self.module.predict(h[b.pred_mask])
            return F.cross_entropy(scores.float(), b.targets, reduction="sum")
        return self.module(*args, **kwargs)

    def predict(self, h: torch.Tensor) -> torch.Tensor:
        return self.module.predict(h)


class Trainer:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.dist = get_dist_info()
        self.device = pick_device(self.dist)
        if cfg.train.precision == "fp16" and self.device.type != "cuda":
            raise XLMError("train.precision: fp16 needs a CUDA device; use bf16 or fp32 on CPU")
        init_distributed(self.dist, self.device)
        # Nothing is written before train() starts the run (a failed start leaves no folder behind).
        self.run_dir = Path(cfg.run.dir)
        self.log = RunLogger(self.run_dir, cfg.run.tensorboard and not cfg.train.eval_only, self.dist.is_main,
                             cfg.run.debug)
        self.ckpt = CheckpointManager(self.run_dir / "checkpoints", cfg.train.keep_last, self.dist.is_main)
        self.lock = RunLock(self.run_dir)
        self.tasks = parse_tasks(cfg.objectives)
        if not self.tasks:
            raise XLMError("objectives: nothing to train (set objectives.mlm and/or objectives.clm)")
        self.metric_names = metric_names(self.tasks)
        vm = cfg.train.validation_metric
        if vm and vm.lstrip("_") not in self.metric_names:
            raise XLMError(f"train.validation_metric: {vm!r} is not computed by this run; choose one of "
                           f"{', '.join(self.metric_names)} (a leading '_' means lower is better)")

        self.data = load_data(cfg, self.tasks, self.dist, warn=self.log.warning)
        n_words = len(self.data.dictionary)
        # Evaluation selects targets by our rules whatever objectives.mlm_targets says (the protocol decides).
        self.masker = Masker(dataclasses.replace(cfg.objectives, mlm_targets="xlm"), n_words,
                             self.data.dictionary.counts)
        # fp16: predicted counts rounded to a multiple of 8 in training (evaluation scores every selected token).
        self.train_masker = (RoundingMasker if cfg.train.precision == "fp16" else Masker)(
            cfg.objectives, n_words, self.data.dictionary.counts)
        self.drawer = TaskDrawer.from_config(cfg.objectives, self.data.sizes, cfg.data.lg_sampling_factor)
        idle = self.drawer.never_drawn()
        if idle and len(idle) == len({t.objective for t in self.tasks}):
            raise XLMError(f"objectives.lambda_{idle[0]}: 0 at every step: nothing would be trained")
        for objective in idle:
            self.log.warning(f"objectives.lambda_{objective}: 0 at every step: its tasks are evaluated, never trained")
        # Evaluation deals batches to ranks; under FSDP2 every forward is a collective, so there every rank
        # scores every batch (the summed counts are world_size times larger; the metrics are ratios).
        fsdp = cfg.train.parallelism == "fsdp" and self.dist.distributed
        rank, world = (0, 1) if fsdp else (self.dist.rank, self.dist.world_size)
        self.evaluator: Evaluator | OriginalEvaluator
        if cfg.train.eval_protocol == "original":
            self.evaluator = original_evaluator(cfg, self.tasks, self.data.eval_sets, self.data.lang2id, n_words,
                                                rank, world)
        else:
            self.evaluator = Evaluator(self.tasks, self.data.eval_sets, self.masker, cfg.data.batch_size,
                                       cfg.run.seed, cfg.objectives.context_size, rank, world, log=self.log.info)

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
        self.restarted = False  # step 0 again in a folder that held an earlier attempt's results
        # Per-device peak FLOP/s for MFU: train.peak_tflops, else known GPUs from a table, else none (no MFU).
        self.peak = cfg.train.peak_tflops * 1e12 if cfg.train.peak_tflops > 0 else peak_flops(
            self.device, cfg.train.precision)

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
            batch = prepare(self.eval_model, batch)  # objectives' model step without gradients (BTMLM generation)
            with no_grad_sync(self.wrapped, sync=i == len(runnable) - 1):
                with self.autocast():
                    value = self.train_model(batch)
                self.scaler.scale(value * (weight * world / counts[f"n{j}"])).backward()
            xent[f"x{j}"] += float(value.detach())
        sums = {**{f"x{j}": xent[f"x{j}"] for j in range(len(drawn))},
                "bad": float(not all(math.isfinite(v) for v in xent.values())),
                "stop": float(self.stop_signal.received is not None)}
        sums = all_reduce_sums(sums, self.device)
        out: dict[str, Any] = {"loss": None, "tasks": defaultdict(list), "tokens": int(counts.get("tokens", 0)),
                               "predicted": 0, "finite": sums["bad"] == 0, "stop": sums["stop"] > 0}
        weighted = total_weight = 0.0
        for j, (task, weight) in enumerate(drawn):
            n = counts[f"n{j}"]
            if n > 0:
                v = sums[f"x{j}"] / n
                out["tasks"][task.name].append(v)
                weighted, total_weight = weighted + weight * v, total_weight + weight
                out["predicted"] += int(n)
        if total_weight > 0:  # the lambda-weighted mean: what is minimized is the weighted sum
            out["loss"] = weighted / total_weight
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
        self.log.record("eval", self.state.step, {"protocol": self.evaluator.protocol, **metrics})
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
        payload["data_fingerprint"] = self.data.fingerprint
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
            blocking, allowed = config_changes(ckpt["config"], self.cfg)
        except XLMError as e:
            raise XLMError(f"{path}: stored config is invalid: {e}") from None
        if blocking:
            raise XLMError(f"{path}: cannot resume: the config differs from the checkpoint's "
                           f"({describe_changes(ckpt['config'], self.cfg, blocking)}); use a new run.dir or restore "
                           "these values")
        for k in allowed:
            self.log.info(f"config change on resume: {describe_changes(ckpt['config'], self.cfg, [k])}")
        if ModelConfig(**ckpt["model_config"]) != self.cfg.model:
            raise XLMError(f"{path}: model config differs from the checkpoint's")
        words = ckpt.get("dictionary", {}).get("words")
        if words is not None and list(words) != self.data.dictionary.id2word:
            raise XLMError(f"{path}: the model was built for another vocabulary ({len(words)} words) than the data "
                           f"in {self.cfg.data.path} ({len(self.data.dictionary)} words): binarize the data with "
                           f"the checkpoint's vocabulary, or use a new run.dir")
        if ckpt.get("data_fingerprint") not in (None, self.data.fingerprint):
            self.log.warning(f"{path}: the corpora in {self.cfg.data.path} differ from the checkpoint's (same "
                             "vocabulary, other sizes): resuming, but the data order will not be the one the run had")

    # -- the loop -------------------------------------------------------------------------------
    def train(self) -> dict[str, float]:
        """Train to ``train.max_steps`` (or early stop); returns the last evaluation's metrics.

        The run folder is resumed from its newest usable step checkpoint; without one it starts (again)
        at step 0, from ``init.from`` if set (see :mod:`xlm.run_folder` for the safety rules). A run
        that fails before its first step removes the folder it created.
        """
        if self.cfg.train.eval_only:
            return self.evaluate_only()
        created = self.dist.is_main and not self.run_dir.exists()
        started = False
        self.stop_signal.install()
        try:
            self._take_lock()
            resumed = self.resume()
            if resumed and self.cfg.init.from_:
                self.log.info(f"init.from {self.cfg.init.from_} ignored: the run folder has a checkpoint to resume")
            if not resumed:
                self._start_fresh()
            metrics = self._loop(resumed)
            started = True
            return metrics
        except BaseException:
            started = started or self.state.step > 0 or bool(self.ckpt.step_files())
            raise
        finally:
            self.stop_signal.uninstall()
            self.log.close()
            self.lock.release()
            if created and not started:
                remove_half_made(self.run_dir)

    def _take_lock(self) -> None:
        """Rank 0 locks the run folder; every rank stops if it could not."""
        error = ""
        if self.dist.is_main:
            try:
                warning = self.lock.acquire()
                if warning:
                    self.log.warning(warning)
            except XLMError as e:
                error = str(e)
        if all_reduce_max(float(bool(error)), self.device) > 0:
            raise XLMError(error or f"{self.run_dir}: rank 0 could not lock the run folder (see its error)")

    def _start_fresh(self) -> None:
        """Step 0 in a folder without a usable step checkpoint: check earlier results, then ``init``."""
        cfg = self.cfg
        best, best_step = check_restart(self.run_dir, cfg, self.data.fingerprint, self.data.dictionary.id2word)
        self.restarted = best is not None or (self.run_dir / "metrics.jsonl").exists()
        if best is not None:
            self.state.best_metric, self.state.best_step = best, best_step
            self.log.info(f"no step checkpoint to resume: starting again at step 0; {self.ckpt.best_path} "
                          f"({cfg.train.validation_metric.lstrip('_')} = {best:.4f}, step {best_step}) is kept "
                          "until a better model replaces it")
        if cfg.init.from_ or cfg.init.emb:
            for line in self.initialize():
                self.log.info(line)

    def initialize(self) -> list[str]:
        """Apply ``init.from`` then ``init.emb`` to the (fresh) model; returns the report lines."""
        cfg, lines = self.cfg.init, []
        if cfg.from_:
            report = init_from(self.model, self.data.dictionary, self.data.lang2id, cfg.from_, cfg.strict)
            lines += report.lines()
        if cfg.emb:
            lines.append(init_embeddings(self.model, self.data.dictionary, cfg.emb))
        return lines

    def evaluate_only(self) -> dict[str, float]:
        """``train.eval_only``: evaluate the newest checkpoint of the run folder (else ``init.from``, else the
        initial model), print the metrics, write nothing."""
        found = self.ckpt.load_latest() if self.ckpt.dir.is_dir() else None
        try:
            if found is not None:
                ckpt, path = found
                self._check_compatible(ckpt, path)
                self.model.load_state_dict(ckpt["model"])
                self.state.step = int(ckpt["train_state"]["step"])
                self.log.info(f"eval_only: {path} (step {self.state.step})")
            elif self.cfg.init.from_ or self.cfg.init.emb:
                for line in self.initialize():
                    self.log.info(line)
            else:
                self.log.info("eval_only: no checkpoint in the run folder and no init.from: the initial model")
            metrics = self.evaluator.evaluate(self.eval_model, self.device, self.autocast)
            for line in format_eval_lines(self.state.step, metrics):
                self.log.info(line)
            return metrics
        finally:
            self.log.close()

    def _loop(self, resumed: bool) -> dict[str, float]:
        cfg, st = self.cfg, self.state
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.run_dir / "config.yaml", dump_config(cfg))
        self.log.start(st.step, restart=not resumed and self.restarted)
        if not resumed:
            self._describe()
        metrics: dict[str, float] = {}
        if st.step == 0 and cfg.train.eval_at_start:
            metrics = self.evaluate()
        interval = _Interval()
        self.train_model.train()
        t_start, step_start = time.perf_counter(), st.step
        while st.step < cfg.train.max_steps:
            t0 = time.perf_counter()
            out = self.train_step()
            st.train_seconds += time.perf_counter() - t0
            interval.add(out, time.perf_counter() - t0)
            last = st.step == cfg.train.max_steps
            if st.step % cfg.run.log_every == 0 or last:
                per_step = (time.perf_counter() - t_start) / (st.step - step_start)  # evaluations included
                self._log_interval(interval, per_step * (cfg.train.max_steps - st.step))
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

    def _preempt(self) -> None:
        sig = self.stop_signal.received or "a signal on another rank"
        self.preempted = sig
        requeued = False
        if self.dist.is_main and sig == "SIGUSR1" and self.dist.launcher == "slurm":
            requeued = request_slurm_requeue()
        self.log.info(f"stopped by {sig} at step {self.state.step}: checkpoint saved; rerun the same command to "
                      f"resume{' (SLURM job requeued)' if requeued else ''}")

    def _log_interval(self, iv: _Interval, eta: float | None = None) -> None:
        st = self.state
        world = self.dist.world_size
        tps = iv.tokens / max(iv.seconds, 1e-9)  # all ranks
        values = {
            # lambda-weighted mean over the tasks of the steps that predicted something (None: none did)
            "loss": iv.loss / iv.steps_with_loss if iv.steps_with_loss else None,
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
        self.log.info(format_train_line(st.step, self.cfg.train.max_steps, values, tasks, eta))
        self.log.record("train", st.step, {**values, **{f"loss_{k}": v for k, v in tasks.items()}})

    def _describe(self) -> None:
        """The start block: where, on what, how much per step."""
        m, d, cfg, dist = self.model, self.data, self.cfg, self.dist
        devices = f"{dist.world_size} x {self.device.type}" + (
            f" ({torch.cuda.get_device_name(self.device)})" if self.device.type == "cuda" else "")
        launcher = "single process" if dist.launcher == "none" else dist.launcher
        self.log.info(f"run folder {self.run_dir} | world size {dist.world_size} ({launcher})"
                      f" | devices {devices} | precision {cfg.train.precision} | parallelism "
                      f"{cfg.train.parallelism if dist.distributed else 'none'}"
                      + (" | compiled" if cfg.train.compile else "")
                      + f" | evaluation protocol {self.evaluator.protocol}")
        self.log.info(f"model: {m.num_parameters() / 1e6:.2f}M parameters, {m.n_layers} layers, dim {m.dim}, "
                      f"{len(d.dictionary)} words, languages {d.lang2id}")
        for task, src in d.sources.items():
            ds = src.dataset
            if isinstance(ds, StreamDataset):
                what = f"{len(ds)} windows of {ds.bptt} tokens from {ds.n_sentences} sentences"
            else:
                what = f"{len(ds)} pairs ({ds.n_dropped} skipped: empty or a side over {ds.max_len} tokens)"
            self.log.info(f"task {task.name}: {what}")
        self.log.info(f"tokens per step: about {self._tokens_per_step():,.0f} on all ranks (tasks drawn per step x "
                      f"accumulate_gradients {cfg.train.accumulate_gradients} x world size {dist.world_size}); "
                      "'loss' below is the lambda-weighted mean of the tasks' losses")

    def _tokens_per_step(self) -> float:
        """Expected input tokens of one optimizer update, over all ranks (streams: batch_size x bptt; pairs:
        the mean tokens of a batch from the sampler's first epoch)."""
        cfg = self.cfg
        per_task = {}
        for task, src in self.data.sources.items():
            if isinstance(src.dataset, StreamDataset):
                per_task[task] = cfg.data.batch_size * cfg.data.bptt
            else:
                batches = src.sampler.make_epoch(np.random.default_rng(0))
                per_task[task] = float(np.mean([src.dataset.lengths[b].sum() for b in batches]))
        drawn = self.drawer.expected_tokens(per_task)
        return drawn * cfg.train.accumulate_gradients * self.dist.world_size


@dataclass
class _Interval:
    steps: int = 0
    steps_with_loss: int = 0
    loss: float = 0.0
    grad_norm: float = 0.0
    tokens: int = 0
    predicted: int = 0
    seconds: float = 0.0
    tasks: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def add(self, out: dict[str, Any], seconds: float) -> None:
        self.steps += 1
        if out["loss"] is not None:
            self.steps_with_loss += 1
            self.loss += out["loss"]
        self.grad_norm += out["grad_norm"] if math.isfinite(out["grad_norm"]) else 0.0
        self.tokens += out["tokens"]
        self.predicted += out["predicted"]
        self.seconds += seconds
        for k, v in out["tasks"].items():
            self.tasks[k].append(v)

