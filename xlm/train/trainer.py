"""The pretraining loop: data -> objectives -> model -> one optimizer update per step; eval, checkpoints, resume.

A step draws its tasks (see :mod:`xlm.objectives`), runs ``accumulate_gradients`` micro-batches of
each, backpropagates ``lambda * loss / accumulate_gradients`` one task at a time, clips, and makes
one optimizer update. Every ``eval_every`` steps it evaluates (and keeps ``best.pt``), every
``save_every`` steps it writes a checkpoint; restarting the same command resumes from the newest one.

Exact resume: all randomness is drawn from generators seeded by ``(seed, rank, step, ...)``
(:mod:`xlm.data.sampling`) -- task draws, masking, dropout (torch's generator is re-seeded at every
step) -- and the samplers' ``(epoch, position)`` are saved, so a resumed run replays the same
batches, masks and dropout as an uninterrupted one and ends with bit-identical parameters (CPU).
Batches are built ahead by a background thread (:mod:`xlm.train.prefetch`); checkpoints keep the
samplers' state of the last step trained, not of the last step built.

The trainer knows nothing of the model's internals: it calls the model's forward and ``predict``
(through :class:`LossModule`, the module DDP/FSDP wrap).

Several processes (torchrun or ``srun``; see ``docs/distributed.md``): every rank builds the same
model and draws the same tasks; stream batches are disjoint parts of one global batch
(:class:`xlm.data.datasets.StreamSampler`); the model runs wrapped in DDP (or FSDP2), with
gradient reduction only on the last backward of a step (``no_sync`` before). Each task's loss is
the sum of cross-entropies divided by the number of predicted tokens of that task over *all* ranks
and micro-batches (host numbers, summed over a gloo group before the first backward), so an update
does not depend on how the global batch is split. Metrics and the stop flag (SIGTERM/SIGUSR1) are
all-reduced when the host reads the steps' statistics (:mod:`xlm.train.step`: once per log interval
with the fused optimizer, every step otherwise); only rank 0 writes; checkpoints keep every rank's
sampler and RNG state.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path

import torch

from xlm.checkpoint import CheckpointManager
from xlm.config import Config, dump_config
from xlm.corpora import load_data
from xlm.data.sampling import torch_seed
from xlm.distributed import (
    StopSignal,
    all_reduce_max,
    get_dist_info,
    host_group,
    init_distributed,
    is_fsdp,
    peak_flops,
    pick_device,
    request_slurm_requeue,
    wrap_model,
)
from xlm.errors import XLMError
from xlm.eval_mt import BleuEvaluator
from xlm.eval_original import OriginalEvaluator, original_evaluator
from xlm.evaluation import Evaluator, metric_names
from xlm.initialize import init_embeddings, init_encoder_decoder, init_from
from xlm.io import atomic_write_text
from xlm.logging import RunLogger, format_eval_lines
from xlm.model.decoder import EncoderDecoder
from xlm.model.transformer import TransformerModel
from xlm.objectives import Masker, TaskDrawer, eval_tasks, parse_tasks
from xlm.optim import LRScheduler, build_optimizer, use_fused
from xlm.precision import RoundingMasker, make_scaler, resolve_precision
from xlm.precision import autocast as precision_autocast
from xlm.run_folder import RunLock, check_restart, remove_half_made
from xlm.train.checkpointing import CheckpointMixin
from xlm.train.compile import compile_scope, warm_inductor
from xlm.train.loss import LossModule
from xlm.train.prefetch import Prefetcher, StepBuilder
from xlm.train.reporting import ReportingMixin
from xlm.train.state import Interval, TrainState
from xlm.train.step import Pending, StepMixin


class Trainer(StepMixin, CheckpointMixin, ReportingMixin):
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.dist = get_dist_info()
        self.device = pick_device(self.dist)
        self.precision = resolve_precision(cfg.train.precision, self.device)
        if self.precision == "fp16" and self.device.type != "cuda":
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
            raise XLMError("objectives: nothing to train (set objectives.mlm, objectives.clm or another objective)")
        self.metric_names = metric_names(self.tasks, bleu=cfg.train.eval_bleu)
        vm = cfg.train.validation_metric
        if vm and vm.lstrip("_") not in self.metric_names:
            spelled = [f"_{n}" if n.endswith("_ppl") else n for n in self.metric_names]  # as they should be written
            raise XLMError(f"train.validation_metric: {vm!r} is not computed by this run; choose one of "
                           f"{', '.join(spelled)} (a leading '_' means lower is better)")
        if vm.endswith("_ppl") and not vm.startswith("_"):  # best.pt would keep the worst model
            raise XLMError(f"train.validation_metric: {vm!r} would be maximized, but a perplexity is better lower: "
                           f"write '_{vm}'")

        # inductor's once-per-process work (compile workers, CPU ISA probe) overlaps loading the data and
        # building the model; started after the checks above, so that a run they stop starts nothing
        inductor = cfg.train.compile and cfg.train.compile_backend == "inductor"
        self.inductor_warmup = warm_inductor(self.device) if inductor else None
        self.data = load_data(cfg, self.tasks, self.dist, warn=self.log.warning)
        n_words = len(self.data.dictionary)
        # Evaluation selects targets by our rules whatever objectives.mlm_targets says (the protocol decides).
        self.masker = Masker(dataclasses.replace(cfg.objectives, mlm_targets="xlm"), n_words,
                             self.data.dictionary.counts)
        # fp16: predicted counts rounded to a multiple of 8 in training (evaluation scores every selected token).
        self.train_masker = (RoundingMasker if self.precision == "fp16" else Masker)(
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
            bleu = BleuEvaluator(self.data.dictionary.id2word, cfg.data.batch_size, cfg.train.beam_size,
                                 cfg.train.length_penalty, cfg.train.early_stopping, rank,
                                 world) if cfg.train.eval_bleu else None
            self.evaluator = Evaluator(eval_tasks(self.tasks), self.data.eval_sets, self.masker, cfg.data.batch_size,
                                       cfg.run.seed, cfg.objectives.context_size, rank, world, log=self.log.info,
                                       bleu=bleu)

        torch.manual_seed(torch_seed(cfg.run.seed))  # same initial weights on every rank
        if cfg.model.pad_index != self.data.dictionary.pad_index:
            raise XLMError(f"model.pad_index: {cfg.model.pad_index}, but <pad> is id {self.data.dictionary.pad_index} "
                           f"in the vocabulary of {cfg.data.path}")
        self.model: TransformerModel | EncoderDecoder = (
            TransformerModel if cfg.model.encoder_only else EncoderDecoder)(cfg.model, n_words, len(cfg.data.langs))
        self.model.to(self.device)
        # self.wrapped: DDP / FSDP2 around the loss module (the loss module itself with one process);
        # self.train_model: what a training step calls (compiled when train.compile).
        loss_module = LossModule(self.model)
        self.compile_scope = compile_scope(cfg.train, fsdp, encoder_decoder=not cfg.model.encoder_only)
        regional = cfg.train.compile and self.compile_scope == "layers"
        if regional:  # compiled regions inside the eager module (xlm.train.compile)
            loss_module.compile_regions(cfg.train.compile_backend)
        self.wrapped = wrap_model(loss_module, cfg.train.parallelism, self.device, self.model.blocks())
        self.fsdp = is_fsdp(self.wrapped)
        self.train_model = (torch.compile(self.wrapped, backend=cfg.train.compile_backend)
                            if cfg.train.compile and not regional else self.wrapped)
        # Evaluation runs the bare model (DDP shares its parameters); under FSDP2 it goes through the root.
        self.eval_model = self.wrapped if self.fsdp else self.model
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(self.model, cfg.optim, self.device)
        # The update of a non-finite step is skipped on the device by the fused kernel (fp16: the scaler's logic).
        self.device_skip = use_fused(cfg.optim, self.device) and self.precision != "fp16"
        self.resolve_every_step = not self.device_skip  # the host knows each step's outcome anyway
        self.host_group = host_group()
        self.pending: list[Pending] = []  # steps whose statistics are still on the device
        self.interval = Interval()
        self.builder = StepBuilder(self.drawer, self.data.sources, self.train_masker, cfg.run.seed, self.dist.rank,
                                   cfg.train.accumulate_gradients, cfg.objectives.context_size,
                                   pin=self.device.type == "cuda", pack_len=cfg.data.bptt if cfg.data.pack else 0,
                                   warn=self.log.warning)
        if cfg.data.pack and cfg.objectives.mlm_targets == "original":
            raise XLMError("data.pack: not with objectives.mlm_targets: original (its rule excludes the first "
                           "position of each row, which packing changes); use mlm_targets: xlm or pack: false")
        self.prefetcher = Prefetcher(self.builder, 0, 0)  # replaced when the loop starts
        self.sampler_states = self._read_sampler_states()  # of the last step trained (checkpoints)
        self.scheduler = LRScheduler(self.optimizer, cfg.optim, cfg.train.max_steps)
        self.scaler = make_scaler(self.device, self.precision)
        self.state = TrainState(world_size=self.dist.world_size)
        self.stop_signal = StopSignal()
        self.preempted: str | None = None  # the signal that stopped the run, if one did
        self.restarted = False  # step 0 again in a folder that held an earlier attempt's results
        # Per-device peak FLOP/s for MFU: train.peak_tflops, else known GPUs from a table, else none (no MFU).
        self.peak = cfg.train.peak_tflops * 1e12 if cfg.train.peak_tflops > 0 else peak_flops(
            self.device, self.precision)

    def _read_sampler_states(self) -> dict[str, dict[str, int]]:
        return {t.name: s.sampler.state_dict() for t, s in self.data.sources.items()}

    # -- precision ------------------------------------------------------------------------------
    def autocast(self) -> contextlib.AbstractContextManager:
        return precision_autocast(self.device, self.precision)

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
        if cfg.init.requested:
            for line in self.initialize():
                self.log.info(line)

    def initialize(self) -> list[str]:
        """Apply ``init.from`` (``init.encoder`` / ``init.decoder``) then ``init.emb`` to the (fresh) model;
        returns the report lines."""
        cfg, lines = self.cfg.init, []
        d, lang2id = self.data.dictionary, self.data.lang2id
        if isinstance(self.model, EncoderDecoder):
            if cfg.encoder or cfg.decoder or cfg.from_:
                for report in init_encoder_decoder(self.model, d, lang2id, cfg.encoder or cfg.from_,
                                                   cfg.decoder or cfg.from_, cfg.strict):
                    lines += report.lines()
            if cfg.emb:
                lines += [init_embeddings(side, d, cfg.emb) for side in (self.model.encoder, self.model.decoder)]
            return lines
        if cfg.from_:
            report = init_from(self.model, d, lang2id, cfg.from_, cfg.strict)
            lines += report.lines()
        if cfg.emb:
            lines.append(init_embeddings(self.model, d, cfg.emb))
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
            elif self.cfg.init.requested:
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
        self.train_model.train()
        self.prefetcher = Prefetcher(self.builder, st.step, cfg.train.prefetch)
        try:
            return self._steps(metrics)
        finally:  # the samplers back where training stopped (the prefetcher read ahead)
            self.prefetcher.close()
            for task, source in self.data.sources.items():
                source.sampler.load_state_dict(self.sampler_states[task.name])

    def _steps(self, metrics: dict[str, float]) -> dict[str, float]:
        cfg, st = self.cfg, self.state
        self.interval = Interval()
        t_start, step_start = time.perf_counter(), st.step
        while st.step < cfg.train.max_steps:
            t0 = time.perf_counter()
            self.train_step()
            last = st.step == cfg.train.max_steps
            log_now = st.step % cfg.run.log_every == 0 or last
            if log_now or self.resolve_every_step:
                signalled = self.resolve()  # (waits for the device: the interval's time includes it)
            else:  # the stop flag is all-reduced with the statistics, at the next resolve
                signalled = not self.dist.distributed and self.stop_signal.received is not None
            seconds = time.perf_counter() - t0
            st.train_seconds += seconds
            self.interval.seconds += seconds
            if log_now:
                per_step = (time.perf_counter() - t_start) / (st.step - step_start)  # evaluations included
                self._log_interval(self.interval, per_step * (cfg.train.max_steps - st.step))
                self.interval = Interval()
            stop = False
            if st.step % cfg.train.eval_every == 0 or last:
                metrics = self.evaluate()
                stop = self._update_best(metrics)
            if signalled and not (last or stop):  # SIGTERM / SIGUSR1 on some rank: save and leave
                self.resolve()
                if self.interval.steps:
                    self._log_interval(self.interval)
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
