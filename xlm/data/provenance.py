"""How a data folder's text was prepared: recorded where it is made, carried into every checkpoint.

A model can only be fed new text the way its training text was prepared (Moses tokenization,
lowercasing and accent removal, pre-segmented languages, the BPE codes). These *text settings*
are one JSON object, the content of ``DATA/preprocess.json``::

    {"tokenize": true, "lower_remove_accent": true, "pre_segmented": [], "segmentation": "bpe",
     "langs": ["en", "fr"]}

``preprocess.py run`` writes it (:func:`xlm.data.pipeline.write_text_settings`). The by-hand
commands record the same facts next to what they write, in ``FILE.preprocess.json``:
``tokenize`` records its settings, ``apply-bpe`` / ``spm-encode`` copy their input's record and add
the codes (path and sha256), and ``binarize`` merges its input's record into
``DATA/preprocess.json`` and copies the codes to ``DATA/codes``, where the trainer reads them. The
trainer stores the settings in every checkpoint (``text_settings``); text piped through ``-``
leaves no record, and then the training config can state it (``data.preprocess``). A folder whose
settings are unknown trains with a loud warning, and its checkpoints say so.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xlm.errors import XLMError, warn
from xlm.io import atomic_write_bytes, atomic_write_text

SETTINGS_FILE = "preprocess.json"
RECORD_SUFFIX = ".preprocess.json"
CODES_FILE = "codes"
_LISTS = ("langs", "pre_segmented")  # merged as sets; every other key must agree
_TYPES: dict[str, type | tuple[type, ...]] = {
    "tokenize": bool, "lower_remove_accent": bool, "pre_segmented": list, "segmentation": str, "langs": list,
}


def known(settings: dict | None) -> bool:
    """Whether ``settings`` say how raw text was tokenized (else the model's input is a guess)."""
    return bool(settings) and "tokenize" in settings  # type: ignore[operator]


def check_settings(settings: Any, where: str) -> dict[str, Any]:
    """A settings object with the known keys typed as they should be (other keys pass through)."""
    if not isinstance(settings, dict):
        raise XLMError(f"{where}: expected a mapping of text settings, got {type(settings).__name__}")
    for key, tp in _TYPES.items():
        if key in settings and not isinstance(settings[key], tp):
            raise XLMError(f"{where}.{key}: expected {getattr(tp, '__name__', tp)}, got {settings[key]!r}")
    if settings.get("segmentation", "bpe") not in ("bpe", "sentencepiece"):
        raise XLMError(f"{where}.segmentation: expected bpe or sentencepiece, got {settings['segmentation']!r}")
    return dict(settings)


# -- records next to files ----------------------------------------------------------------------------
def record_path(path: str | os.PathLike) -> Path | None:
    """Where the record of a text file lives (None for ``-``, stdin/stdout)."""
    return None if str(path) == "-" else Path(str(path) + RECORD_SUFFIX)


def read_record(path: str | os.PathLike) -> dict[str, Any] | None:
    """The record next to ``path``, or None when there is none."""
    rec = record_path(path)
    if rec is None or not rec.is_file():
        return None
    try:
        return check_settings(json.loads(rec.read_text(encoding="utf-8")), str(rec))
    except (OSError, ValueError) as e:
        raise XLMError(f"{rec}: unreadable record of how {path} was made ({e})") from None


def write_record(path: str | os.PathLike, record: dict[str, Any] | None) -> None:
    """Record how ``path`` was made; a stale record of an earlier run is removed when nothing is known."""
    rec = record_path(path)
    if rec is None:
        return
    if record is None:
        if rec.exists():
            rec.unlink()
        return
    atomic_write_text(rec, json.dumps(record, indent=2, ensure_ascii=False) + "\n")


def tokenize_record(lang: str, tokenizer: Any) -> dict[str, Any]:
    """What ``preprocess.py tokenize`` did with ``tokenizer`` (a :class:`xlm.data.tokenize.Tokenizer`), as
    ``preprocess.json`` keys."""
    return {**tokenizer.settings(), "langs": [lang]}


def _fingerprint(path: str | os.PathLike) -> dict[str, str]:
    p = Path(path)
    return {"path": str(p.resolve()), "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}


def segment_record(input: str | os.PathLike, segmentation: str, model: str | os.PathLike) -> dict[str, Any]:
    """The input's record (if any) plus the segmentation and its model file (``codes`` or ``spm.model``)."""
    record = dict(read_record(input) or {})
    record["segmentation"] = segmentation
    record["codes" if segmentation == "bpe" else "spm_model"] = _fingerprint(model)
    return record


# -- the data folder ----------------------------------------------------------------------------------
def merge(existing: dict[str, Any], new: dict[str, Any], where: str) -> dict[str, Any]:
    """Settings of one folder from several files: lists are united, mappings merged key by key, anything
    else must agree."""
    out = dict(existing)
    for key, value in new.items():
        if key in ("codes", "spm_model"):
            continue  # the file itself is copied into the folder
        if key in _LISTS:
            out[key] = sorted(set(out.get(key, [])) | set(value))
        elif isinstance(value, dict) and isinstance(out.get(key), dict):  # per language, e.g. segmenters
            out[key] = merge(out[key], value, f"{where}: {key}")
        elif key in out and out[key] != value:
            raise XLMError(f"{where}: {key}={json.dumps(value)} but the folder's other data has "
                           f"{key}={json.dumps(out[key])}; one folder holds text prepared one way")
        else:
            out[key] = value
    return out


@dataclass
class Install:
    """What ``binarize`` writes into the data folder once the binarized files are in place."""

    settings: dict[str, Any] | None = None  # the new preprocess.json, None when unchanged
    target: Path | None = None
    copies: list[tuple[bytes, Path]] = field(default_factory=list)
    warning: str = ""  # said once the data is written (a failed binarize says only why it failed)

    def apply(self) -> list[str]:
        """Write (or warn); returns the files written (for the command's log)."""
        if self.warning:
            warn(self.warning, stacklevel=2)
        done = []
        for data, path in self.copies:
            atomic_write_bytes(path, data)
            done.append(str(path))
        if self.settings is not None and self.target is not None:
            atomic_write_text(self.target, json.dumps(self.settings, indent=2, ensure_ascii=False) + "\n")
            done.append(str(self.target))
        return done


def plan_install(input: str | os.PathLike, folder: str | os.PathLike) -> Install:
    """Check that the record of ``input`` fits ``folder`` (before anything is written) and plan the writes.

    The record is merged into ``folder/preprocess.json`` and its codes copied to ``folder/codes``;
    a clash is an :class:`XLMError`; no record is an :class:`XLMWarning` when the plan is applied.
    """
    folder = Path(folder)
    record = read_record(input)
    if record is None:
        missing = "read from stdin" if str(input) == "-" else f"no {input}{RECORD_SUFFIX}"
        return Install(warning=f"{input}: no record of how this text was prepared ({missing}): {folder} will not "
                               f"say how to tokenize new text (lowercasing, codes) unless its {SETTINGS_FILE} "
                               "already does; state it in the training config as data.preprocess")
    where = str(record_path(input))
    target = folder / SETTINGS_FILE
    existing = check_settings(json.loads(target.read_text(encoding="utf-8")), str(target)) if target.is_file() else {}
    merged = merge(existing, record, where)
    plan = Install(merged if merged != existing else None, target)
    for key, name in (("codes", CODES_FILE), ("spm_model", "spm.model")):
        if key in record:
            plan.copies += _model_file(record[key], folder / name, where)
    return plan


def _model_file(source: dict[str, str], target: Path, where: str) -> list[tuple[bytes, Path]]:
    src = Path(source["path"])
    try:
        data = src.read_bytes()
    except OSError:
        warn(f"{where}: {src} is gone; copy it to {target} by hand so that models trained here know their codes")
        return []
    if hashlib.sha256(data).hexdigest() != source["sha256"]:
        raise XLMError(f"{where}: {src} has changed since the text was segmented with it; segment the text again")
    if target.is_file():
        if target.read_bytes() != data:
            raise XLMError(f"{target}: holds other codes than {src}, which this text was segmented with; "
                           "one folder holds text segmented one way")
        return []
    return [(data, target)]


def for_training(data_path: str | os.PathLike, stated: dict[str, Any],
                 bpe_vocab: bool) -> tuple[dict[str, Any] | None, list[str]]:
    """The settings that checkpoints of a run on ``data_path`` record, and the warnings to log.

    ``stated`` is the config's ``data.preprocess`` (empty: not stated): it may fill in a folder that
    has no ``preprocess.json`` but must not contradict one that has. ``bpe_vocab``: the vocabulary
    holds BPE pieces (``@@``), so the folder needs its ``codes``. Settings are None when unknown.
    """
    path = Path(data_path) / SETTINGS_FILE
    folder: dict[str, Any] = {}
    if path.is_file():
        try:
            folder = check_settings(json.loads(path.read_text(encoding="utf-8")), str(path))
        except ValueError as e:
            raise XLMError(f"{path}: invalid JSON ({e})") from None
    if stated:
        stated = check_settings(stated, "data.preprocess")
        clash = sorted(k for k in stated if k in folder and folder[k] != stated[k])
        if clash:
            k = clash[0]
            raise XLMError(f"data.preprocess.{k}: {json.dumps(stated[k])} but {path} says {json.dumps(folder[k])}")
        folder = {**folder, **stated}
    problems = []
    if bpe_vocab and not (Path(data_path) / CODES_FILE).is_file():
        problems.append(f"{data_path}: its vocabulary holds BPE pieces but there is no {CODES_FILE} file: checkpoints "
                        "of this run will not carry their codes (copy the codes the text was segmented with to "
                        f"{Path(data_path) / CODES_FILE})")
    if not known(folder):
        problems.append(f"{data_path}: no {SETTINGS_FILE} says how its text was tokenized (lowercasing, "
                        "pre-segmented languages): checkpoints of this run cannot prepare new text the same way. "
                        "Prepare the data with 'preprocess.py run' or the by-hand commands writing to files, or "
                        "state it in the config, e.g. data.preprocess: {tokenize: true, lower_remove_accent: true}")
    return (folder if known(folder) else folder or None), problems
