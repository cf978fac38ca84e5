"""Mixed precision: autocast contexts, the fp16 loss scaler, and fp16-friendly MLM prediction counts.

- ``fp32``: nothing.
- ``bf16``: ``torch.autocast(dtype=bfloat16)``; no scaler (bf16 has fp32's exponent range).
  Works on CPU too (slow without bf16 units).
- ``fp16``: autocast + :class:`torch.amp.GradScaler` (CUDA only). A step whose gradients overflow
  is skipped by the scaler and counted (``TrainState.overflow_steps``); the scale is logged and
  saved in checkpoints.

Parameters and optimizer state stay fp32 in every mode (autocast casts on the fly), and the loss
is computed in fp32. :class:`RoundingMasker` rounds the number of MLM positions predicted in a
batch down to a multiple of 8 when there are at least 8 (tensor-core-friendly shapes for the output
layer), as the original's fp16 mode, but never fails for 1-7 (the original asserted).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from xlm.errors import XLMError
from xlm.objectives import Masker

PRECISIONS = ("fp32", "bf16", "fp16")


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> ``bf16`` on CUDA GPUs of compute capability 8.0 and newer (Ampere, Hopper: bf16
    tensor cores), ``fp16`` on older ones (Volta, Turing: fp16 tensor cores only, with the loss scaler;
    the XLM paper's V100 setting), ``fp32`` on CPU; any other value is returned unchanged."""
    if precision != "auto":
        return precision
    if device.type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.get_device_capability(device)[0] >= 8 else "fp16"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def make_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """An enabled GradScaler for fp16 (CUDA only), a disabled one (a no-op) otherwise."""
    if precision not in PRECISIONS:
        raise XLMError(f"train.precision: one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise XLMError("train.precision: fp16 needs a CUDA device; use bf16 or fp32 on CPU")
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


class RoundingMasker(Masker):
    """A :class:`Masker` whose selections have a multiple of 8 positions when they have at least 8."""

    multiple = 8

    def select(self, x: np.ndarray, gen: np.random.Generator) -> np.ndarray:
        sel = super().select(x, gen)
        n = int(sel.sum())
        extra = n % self.multiple if n >= self.multiple else 0
        if extra:
            flat = np.flatnonzero(sel)
            sel.flat[flat[gen.choice(n, size=extra, replace=False)]] = False
        return sel
