"""Checkpoint files: the format contract, atomic saves, keep-last-k, and finding the one to resume.

Layout under ``RUN/checkpoints/``: ``step-00001000.pt`` (full training state, the last
``keep_last`` kept), ``latest`` (text: the file name of the newest one, replaced atomically after
it is written), and ``best.pt`` (model only, at the best validation metric). Resuming picks the
highest-numbered step file that loads.

Every file is a dict of tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(weights_only=True)`` (:func:`xlm.serialization.safe_load`). Keys every checkpoint has
(read by :func:`xlm.load_pretrained`):

``format`` ("xlm"), ``version`` (1), ``model`` (plain state dict), ``model_config``, ``n_words``,
``lang2id``, ``dictionary`` (``{"words": id2word, "counts": [...]}``), ``config`` (the resolved run
config), ``bpe_codes`` (text of ``DATA/codes`` or None), ``text_settings`` (how raw text was prepared:
the data folder's ``preprocess.json``, see :mod:`xlm.data.provenance`; None when unknown), ``step``.

Training checkpoints add ``optimizer``, ``scheduler``, ``scaler``, ``train_state`` (counters, best
metric, early-stopping counter), ``samplers`` and ``rng`` (one entry per rank).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xlm.config import Config, ModelConfig, to_dict
from xlm.data.dictionary import Dictionary
from xlm.errors import XLMError
from xlm.io import atomic_write_text
from xlm.logging import get_logger
from xlm.serialization import atomic_save, safe_load

FORMAT = "xlm"
VERSION = 1
_STEP_RE = re.compile(r"^step-(\d+)\.pt$")


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model under DDP/FSDP (``.module``) or ``torch.compile`` (``._orig_mod``) wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def cpu_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """A plain state dict on CPU (no wrapper prefixes); tied weights stay one shared tensor."""
    memo: dict[int, torch.Tensor] = {}
    out = {}
    for k, v in unwrap(model).state_dict().items():
        key = id(v)
        if key not in memo:
            memo[key] = v.detach().cpu()
        out[k] = memo[key]
    return out


def model_payload(model: nn.Module, model_cfg: ModelConfig, lang2id: dict[str, int], dictionary: Dictionary,
                  config: Config, bpe_codes: str | None, step: int,
                  text_settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """The keys of the checkpoint format contract."""
    bare = unwrap(model)
    return {
        "format": FORMAT,
        "version": VERSION,
        "model": cpu_state_dict(bare),
        "model_config": dataclasses.asdict(model_cfg),
        "n_words": int(bare.n_words),
        "lang2id": dict(lang2id),
        "dictionary": {"words": list(dictionary.id2word), "counts": [int(c) for c in dictionary.counts]},
        "config": to_dict(config),
        "bpe_codes": bpe_codes,
        "text_settings": dict(text_settings) if text_settings is not None else None,
        "step": int(step),
    }


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = [s for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available() and state.get("cuda"):
        torch.cuda.set_rng_state_all(state["cuda"])


def check_payload(ckpt: Any, path: Path) -> dict[str, Any]:
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise XLMError(f"{path}: not an xlm checkpoint (no 'format': 'xlm')")
    if ckpt.get("version") != VERSION:
        raise XLMError(f"{path}: unsupported checkpoint version {ckpt.get('version')!r} (this code reads {VERSION})")
    return ckpt


class CheckpointManager:
    """Writes ``step-*.pt``/``best.pt`` atomically, prunes old ones, and finds the newest usable one."""

    def __init__(self, directory: str | Path, keep_last: int = 2, is_main: bool = True):
        self.dir = Path(directory)
        self.keep_last = keep_last
        self.is_main = is_main

    def step_path(self, step: int) -> Path:
        return self.dir / f"step-{step:08d}.pt"

    @property
    def best_path(self) -> Path:
        return self.dir / "best.pt"

    @property
    def latest_pointer(self) -> Path:
        return self.dir / "latest"

    def step_files(self) -> list[tuple[int, Path]]:
        """Complete step checkpoints, oldest first (temporary files of interrupted saves are not listed)."""
        if not self.dir.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.dir.iterdir() if (m := _STEP_RE.match(p.name))]
        return sorted(found)

    def remove_stale_temporaries(self) -> None:
        """Delete ``.*.tmp`` files left by a save that was killed (they were never renamed into place)."""
        if self.is_main and self.dir.is_dir():
            for p in self.dir.glob(".*.tmp"):
                with contextlib.suppress(OSError):
                    p.unlink()

    def save(self, payload: dict[str, Any], step: int) -> Path:
        """Write ``step-N.pt``, then point ``latest`` at it, then prune (a crash at any point leaves a usable one)."""
        path = self.step_path(step)
        if not self.is_main:
            return path
        atomic_save(payload, path)
        atomic_write_text(self.latest_pointer, path.name + "\n")
        for _, old in self.step_files()[: -self.keep_last]:
            with contextlib.suppress(OSError):
                old.unlink()
        return path

    def save_best(self, payload: dict[str, Any]) -> Path:
        if self.is_main:
            atomic_save(payload, self.best_path)
        return self.best_path

    def latest(self) -> Path | None:
        """The highest-numbered ``step-*.pt``: a file only gets that name once it is complete.

        (``latest`` is written too, for people and tools; scanning also covers a kill between the
        rename of a new checkpoint and the update of the pointer, or checkpoints deleted by hand.)
        """
        files = self.step_files()
        return files[-1][1] if files else None

    def load_latest(self) -> tuple[dict[str, Any], Path] | None:
        """Load the newest checkpoint that reads back; older ones are tried if it is damaged."""
        candidates = [p for _, p in reversed(self.step_files())]
        if not candidates:
            return None
        errors = []
        for path in candidates:
            try:
                return check_payload(safe_load(path), path), path
            except Exception as e:  # noqa: BLE001 - any unreadable file: fall back to an older one
                errors.append(str(e) if isinstance(e, XLMError) else f"{path.name}: {type(e).__name__}: {e}")
                get_logger().warning(f"WARNING: cannot resume from {path}: {e}; trying an older checkpoint")
        raise XLMError(f"{self.dir}: no usable checkpoint to resume from ({'; '.join(errors)})")


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load and check any xlm checkpoint file (training or best)."""
    path = Path(path)
    return check_payload(safe_load(path), path)
