"""Perplexity and accuracy of a pretrained model on binarized valid/test data, under either protocol.

``python -m xlm.evaluate lm --model M --data DIR [--protocol xlm|original]``:

- ``xlm`` (default): :class:`xlm.evaluation.Evaluator`, the evaluation our trainer runs;
- ``original``: :class:`xlm.eval_original.OriginalEvaluator`, facebookresearch/XLM's figures exactly.

Which objectives and languages are evaluated comes from the checkpoint (an original ``.pth``'s
``params.mlm_steps``/``clm_steps``, our checkpoint's ``objectives``) unless ``--mlm``/``--clm`` say.
The batching settings come from the checkpoint too (original ``params`` or our ``config``); an option
given on the command line wins, and defaults (the original's) fill the rest. The result names where
each setting came from.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from xlm.config import ObjectivesConfig, from_dict
from xlm.data.datasets import ParallelDataset, StreamDataset, mono_prefix, open_corpus, para_prefix
from xlm.data.dictionary import Dictionary
from xlm.data.indexed import IndexedDataset
from xlm.errors import XLMError
from xlm.eval_original import SPLITS, OriginalEvaluator, OriginalSettings
from xlm.evaluation import Evaluator
from xlm.objectives import Masker, Task
from xlm.pretrained import Pretrained, load_pretrained
from xlm.serialization import safe_load

PROTOCOLS = ("xlm", "original")
SETTING_KEYS = tuple(f.name for f in dataclasses.fields(OriginalSettings))


@dataclass
class LMEvaluation:
    protocol: str
    metrics: dict[str, float]
    settings: dict[str, Any]
    origin: dict[str, str] = field(default_factory=dict)  # setting -> "params" | "config" | "option" | "default"

    def as_dict(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "settings": self.settings, **self.metrics}

    def lines(self) -> list[str]:
        what = ("the original's evaluator (facebookresearch/XLM Evaluator.evaluate_mlm/evaluate_clm), reproduced"
                if self.protocol == "original" else "xlm's evaluation (as in training)")
        used = ", ".join(f"{k} {v} ({self.origin.get(k, 'default')})" for k, v in self.settings.items())
        width = max((len(k) for k in self.metrics), default=0)
        return [f"protocol: {self.protocol}: {what}", f"settings: {used}",
                *(f"{k:<{width}} {v:12.4f}" for k, v in self.metrics.items())]


# -- what the checkpoint says -----------------------------------------------------------------------
def _steps(value: Any) -> list[str]:
    """``[("en", None), ("en", "fr")]`` or ``"en,en-fr"`` or ``["en", "en-fr"]`` -> ``["en", "en-fr"]``."""
    if isinstance(value, str):
        return [s for s in value.split(",") if s]
    out = []
    for step in value or []:
        if isinstance(step, (list, tuple)):
            out.append("-".join(str(s) for s in step if s is not None))
        else:
            out.append(str(step))
    return out


def parse_steps(mlm: Sequence[str], clm: Sequence[str], lang2id: dict[str, int]) -> list[Task]:
    """Tasks in the original's order (CLM first); every language must be one of the model's."""
    tasks = []
    for objective, steps in (("clm", clm), ("mlm", mlm)):
        for step in steps:
            parts = step.split("-")
            if len(parts) > 2 or not all(parts) or (len(parts) == 2 and parts[0] == parts[1]):
                raise XLMError(f"--{objective}: {step!r} is neither a language nor a pair 'l1-l2'")
            unknown = [p for p in parts if p not in lang2id]
            if unknown:
                raise XLMError(f"--{objective}: language {unknown[0]!r} is not one of the model's "
                               f"({', '.join(lang2id)})")
            tasks.append(Task(objective, parts[0], parts[1] if len(parts) == 2 else None))
    return tasks


def checkpoint_settings(p: Pretrained, params: dict | None) -> tuple[dict[str, Any], str, list[str], list[str]]:
    """``(settings found, where, mlm steps, clm steps)`` from an original's params or our config."""
    if params is not None:
        found = {k: params[k] for k in SETTING_KEYS if k in params and k != "n_langs"}
        langs = params.get("langs")
        found["n_langs"] = len(langs) if isinstance(langs, (list, tuple)) else len(p.lang2id)
        return found, "params", _steps(params.get("mlm_steps")), _steps(params.get("clm_steps"))
    if p.config:
        data, obj = p.config.get("data", {}), p.config.get("objectives", {})
        keys = ("bptt", "batch_size", "max_batch_size", "tokens_per_batch", "max_len")
        found = {k: data[k] for k in keys if k in data}
        if "word_pred" in obj:
            found["word_pred"] = obj["word_pred"]
        found["n_langs"] = len(data.get("langs") or p.lang2id)
        return found, "config", list(obj.get("mlm") or []), list(obj.get("clm") or [])
    return {"n_langs": len(p.lang2id)}, "checkpoint", [], []


def resolve_settings(found: dict[str, Any], where: str, options: dict[str, Any]) -> tuple[OriginalSettings, dict]:
    """Options given on the command line win over the checkpoint's values, which win over defaults."""
    values, origin = {}, {}
    for f in dataclasses.fields(OriginalSettings):
        if options.get(f.name) is not None:
            values[f.name], origin[f.name] = options[f.name], "option"
        elif f.name in found:
            values[f.name], origin[f.name] = found[f.name], where
    settings = OriginalSettings(**{k: type(getattr(OriginalSettings, k))(v) for k, v in values.items()})
    return settings, origin


# -- data -------------------------------------------------------------------------------------------
def check_vocab(data_dir: Path, dico: Dictionary) -> Dictionary:
    """The data's vocabulary must start with the model's words (it may hold more: a trimmed model)."""
    full = Dictionary.read_vocab(data_dir / "vocab")
    n = len(dico)
    if len(full) < n:
        raise XLMError(f"{data_dir / 'vocab'}: {len(full)} words, fewer than the model's {n}")
    diff = next((i for i, (a, b) in enumerate(zip(full.id2word[:n], dico.id2word)) if a != b), None)
    if diff is not None:
        raise XLMError(f"{data_dir / 'vocab'}: word {diff} is {full.id2word[diff]!r} but the model's is "
                       f"{dico.id2word[diff]!r}: the data was binarized with another vocabulary")
    return full


def open_sources(data_dir: Path, tasks: list[Task], splits: Sequence[str],
                 full: Dictionary) -> dict[tuple[str, Task], IndexedDataset | tuple[IndexedDataset, IndexedDataset]]:
    """``(split, task) -> corpus`` (memory-mapped); pairs as ``(lang1 side, lang2 side)``."""
    fingerprint, opened = full.fingerprint(), {}

    def corpus(prefix: Path) -> IndexedDataset:
        if prefix not in opened:
            opened[prefix] = open_corpus(prefix, len(full), fingerprint)
        return opened[prefix]

    out = {}
    for split in splits:
        for t in tasks:
            if t.is_pair:
                out[(split, t)] = (corpus(para_prefix(data_dir, split, t.lang1, t.lang2, t.lang1)),
                                   corpus(para_prefix(data_dir, split, t.lang1, t.lang2, t.lang2)))
            else:
                out[(split, t)] = corpus(mono_prefix(data_dir, split, t.lang1))
    return out


# -- the command ------------------------------------------------------------------------------------
def evaluate_lm(model: str | os.PathLike, data: str | os.PathLike, protocol: str = "xlm",
                mlm: Sequence[str] | None = None, clm: Sequence[str] | None = None,
                splits: Sequence[str] = SPLITS, device: str = "cpu", **options: Any) -> LMEvaluation:
    """Evaluate ``model`` on ``data`` (a binarized folder); ``options``: any :class:`OriginalSettings` field."""
    if protocol not in PROTOCOLS:
        raise XLMError(f"--protocol: one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    bad = [s for s in splits if s not in SPLITS]
    if bad or not splits:
        raise XLMError(f"--splits: choose among {', '.join(SPLITS)}, got {','.join(splits)!r}")
    unknown = set(options) - set(SETTING_KEYS)
    if unknown:
        raise XLMError(f"unknown evaluation option(s) {', '.join(sorted(unknown))}")
    data_dir = Path(data)
    if not data_dir.is_dir():
        raise XLMError(f"--data: {data_dir} is not a folder")
    dev = torch.device(device)
    p = load_pretrained(model, device=dev)
    params = None
    if p.source == "original":  # the loader keeps only what the model needs: read the run's params again
        params = safe_load(model).get("params")
    found, where, ck_mlm, ck_clm = checkpoint_settings(p, params)
    if mlm is None and clm is None:
        if not ck_mlm and not ck_clm:
            raise XLMError(f"{model}: the checkpoint does not say which objectives it was trained with; "
                           "give --mlm and/or --clm (e.g. --mlm en,fr,en-fr)")
        mlm, clm = ck_mlm, ck_clm
    tasks = parse_steps(mlm or [], clm or [], p.lang2id)
    if not tasks:
        raise XLMError("nothing to evaluate: --mlm and --clm are both empty")
    settings, origin = resolve_settings(found, where, options)
    full = check_vocab(data_dir, p.dictionary)
    sources = open_sources(data_dir, tasks, splits, full)
    n_words = len(p.dictionary)
    if protocol == "original":
        evaluator: OriginalEvaluator | Evaluator = OriginalEvaluator(
            tasks, sources, settings, p.lang2id, n_words, p.model.cfg.max_positions)
    else:
        evaluator = xlm_evaluator(p, tasks, sources, settings, n_words)
    metrics = evaluator.evaluate(p.model, dev)
    shown = settings.as_dict()
    if protocol == "xlm":  # the only settings our evaluation uses
        shown = {k: shown[k] for k in ("bptt", "batch_size", "word_pred")}
    return LMEvaluation(protocol, metrics, shown, {k: v for k, v in origin.items() if k in shown})


def xlm_evaluator(p: Pretrained, tasks: list[Task], sources: dict, settings: OriginalSettings,
                  n_words: int) -> Evaluator:
    """Our evaluation: stream windows and length-sorted pair batches, masks from ``(seed, split, task, batch)``."""
    config = p.config or {}
    obj = ObjectivesConfig()
    if isinstance(config.get("objectives"), dict):
        known = {f.name for f in dataclasses.fields(ObjectivesConfig)}
        obj = from_dict(ObjectivesConfig, {k: v for k, v in config["objectives"].items() if k in known})
    obj = dataclasses.replace(obj, word_pred=settings.word_pred, mlm_targets="xlm")  # our targets in our protocol
    seed = int((config.get("run") or {}).get("seed", 0))
    longest = p.model.cfg.max_positions - p.model.cfg.position_offset - 2
    datasets: dict = {}
    for (split, t), src in sources.items():
        if isinstance(src, tuple):
            datasets[(split, t)] = ParallelDataset(src[0], src[1], n_words, p.lang2id[t.lang1], p.lang2id[t.lang2],
                                                   longest)
        else:
            datasets[(split, t)] = StreamDataset(src, settings.bptt, n_words, p.lang2id[t.lang1])
    masker = Masker(obj, n_words, p.dictionary.counts)
    return Evaluator(tasks, datasets, masker, settings.batch_size, seed, obj.context_size)
