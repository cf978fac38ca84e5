"""What the run prints and records: the start block and one line per log interval."""

from __future__ import annotations

import numpy as np
import torch

from xlm.data.datasets import SentenceDataset, StreamDataset
from xlm.distributed import (
    all_reduce_max,
    memory_bytes,
)
from xlm.logging import format_train_line
from xlm.train.state import Interval


class ReportingMixin:
    """Part of :class:`xlm.train.trainer.Trainer` (split for size; it uses the trainer's attributes)."""

    def _log_interval(self, iv: Interval, eta: float | None = None) -> None:
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
                      f" | devices {devices} | precision {self.precision} | parallelism "
                      f"{cfg.train.parallelism if dist.distributed else 'none'}"
                      + (f" | compiled ({self.compile_scope})" if cfg.train.compile else "")
                      + f" | evaluation protocol {self.evaluator.protocol}")
        self.log.info(f"model: {m.num_parameters() / 1e6:.2f}M parameters, {m.n_layers} layers, dim {m.dim}, "
                      f"{len(d.dictionary)} words, languages {d.lang2id}")
        for task, src in d.sources.items():
            ds = src.dataset
            if isinstance(ds, StreamDataset):
                what = f"{len(ds)} windows of {ds.bptt} tokens from {ds.n_sentences} sentences"
            elif isinstance(ds, SentenceDataset):
                what = f"{len(ds)} sentences ({ds.n_dropped} skipped: empty or over {ds.max_len} tokens)"
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
