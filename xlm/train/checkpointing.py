"""Writing and resuming training checkpoints (every rank's sampler and RNG state included)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from xlm.checkpoint import model_payload, rng_state, set_rng_state
from xlm.config import ModelConfig
from xlm.distributed import (
    all_gather_objects,
    barrier,
)
from xlm.errors import XLMError
from xlm.run_folder import config_changes, describe_changes
from xlm.train.state import TrainState


class CheckpointMixin:
    """Part of :class:`xlm.train.trainer.Trainer` (split for size; it uses the trainer's attributes)."""

    def _model_payload(self) -> dict[str, Any]:
        payload = model_payload(self.model, self.cfg.model, self.data.lang2id, self.data.dictionary, self.cfg,
                                self.data.bpe_codes, self.state.step, self.data.text_settings)
        payload["data_fingerprint"] = self.data.fingerprint
        spm = Path(self.cfg.data.path) / "spm.model"
        if spm.is_file():  # SentencePiece-segmented data: raw text needs the model (xlm.text)
            payload["spm_model"] = spm.read_bytes()
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
        self.resolve()  # the counters of every step trained so far (skipped updates taken back)
        per_rank = all_gather_objects({
            "samplers": self.sampler_states,  # as of the last step trained: the prefetcher reads ahead
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
        self.sampler_states = self._read_sampler_states()
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
        saved = {**ckpt["model_config"], "checkpoint_activations": self.cfg.model.checkpoint_activations}
        if ModelConfig(**saved) != self.cfg.model:
            raise XLMError(f"{path}: model config differs from the checkpoint's")
        words = ckpt.get("dictionary", {}).get("words")
        if words is not None and list(words) != self.data.dictionary.id2word:
            raise XLMError(f"{path}: the model was built for another vocabulary ({len(words)} words) than the data "
                           f"in {self.cfg.data.path} ({len(self.data.dictionary)} words): binarize the data with "
                           f"the checkpoint's vocabulary, or use a new run.dir")
        if ckpt.get("data_fingerprint") not in (None, self.data.fingerprint):
            self.log.warning(f"{path}: the corpora in {self.cfg.data.path} differ from the checkpoint's (same "
                             "vocabulary, other sizes): resuming, but the data order will not be the one the run had")
