"""Safe checkpoint I/O: ``torch.load(weights_only=True)`` with a small allow-list, atomic saves.

Opening a checkpoint must never run pickled code. Original XLM checkpoints keep numpy arrays in
``params``, so numpy's array reconstruction is allowed, under both its numpy 1.x and 2.x module
names; anything else that is not a tensor or a plain container is refused with a clear error.
"""

from __future__ import annotations

import io
import os
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xlm.errors import XLMError
from xlm.io import atomic_open


def _numpy_globals() -> list:
    reconstruct = np._core.multiarray._reconstruct if hasattr(np, "_core") else np.core.multiarray._reconstruct
    scalar = np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar
    allowed: list = [np.ndarray, np.dtype]
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed += [(reconstruct, f"{mod}._reconstruct"), (scalar, f"{mod}.scalar")]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        allowed += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    return allowed


SAFE_GLOBALS = _numpy_globals()


def safe_load(path: str | os.PathLike | io.BytesIO, extra_globals: list | None = None) -> Any:
    """Load a ``torch.save`` file on CPU without executing arbitrary pickled code."""
    name = getattr(path, "name", path)
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS + list(extra_globals or [])):
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise XLMError(f"{name}: no such checkpoint file") from None
    except IsADirectoryError:
        raise XLMError(f"{name}: is a directory, expected a checkpoint file") from None
    except pickle.UnpicklingError as e:
        found = re.search(r"(?:unsupported|Unsupported global:) GLOBAL ([\w.]+)", str(e))
        what = found.group(1) if found else str(e).splitlines()[0][:200]
        if found or "weights_only" in str(e).lower():
            raise XLMError(
                f"{name}: refusing to load: the file holds a pickled object outside the allow-list "
                f"({what}); loading it could run arbitrary code"
            ) from None
        raise XLMError(f"{name}: corrupt checkpoint ({what})") from None
    except Exception as e:  # torch raises many types for junk bytes (struct.error, KeyError, ...)
        msg = str(e).split(". ")[0].splitlines()[0][:160] if str(e) else type(e).__name__
        raise XLMError(f"{name}: truncated or corrupt checkpoint ({msg})") from None


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename over it."""
    with atomic_open(Path(path), "wb") as f:
        torch.save(obj, f)
