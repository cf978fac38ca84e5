"""``preprocess.py run CONFIG.yaml``: raw text to a folder the trainer reads, in one rerunnable command.

Steps, as the original's scripts: tokenize every raw file -> learn BPE codes on the tokenized
*train* files of all languages together (monolingual and both sides of parallel data: one joint
vocabulary, as XLM uses) -> apply BPE to every file -> count the vocabulary on the BPE'd train
files -> binarize every file. With ``segmentation: sentencepiece`` a SentencePiece model replaces
the codes. Existing ``codes``/``vocab`` (or a SentencePiece ``model``) can be given instead of being
learned, e.g. to preprocess new data for a released model.

Output folder::

    OUT/vocab  OUT/codes (or OUT/spm.model)
    OUT/{split}.{lang}.bin/.idx              monolingual
    OUT/{split}.{l1}-{l2}.{lang}.bin/.idx    parallel, l1 < l2
    OUT/work/...                             intermediate text files and step stamps

Steps run as a dependency graph on a pool of processes (independent files in parallel) and are
stamped when done (:mod:`xlm.data.steps`): a rerun skips what is done and up to date; after a crash
or a kill, rerunning finishes the job and gives the same files as an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from xlm.config import from_dict
from xlm.data import textio
from xlm.data.steps import Plan, RunReport, exclusive_folder, run_steps
from xlm.errors import XLMError
from xlm.io import atomic_write_text

SPLITS = ("train", "valid", "test")
_LANG = re.compile(r"[a-z]{2,3}([_][A-Za-z0-9]+)?\Z")


# -- configuration -------------------------------------------------------------------------------------
@dataclass
class BPEConfig:
    """Learn ``n_codes`` merges, or use an existing ``codes`` file (and optionally its ``vocab``)."""

    n_codes: int = 0
    codes: str = ""
    vocab: str = ""


@dataclass
class SentencePieceConfig:
    """Train a model of ``vocab_size`` pieces, or use an existing ``model`` (and optionally its ``vocab``)."""

    vocab_size: int = 0
    model: str = ""
    vocab: str = ""
    model_type: Literal["unigram", "bpe", "char", "word"] = "unigram"
    character_coverage: float = 0.9995
    input_sentence_size: int = 2_000_000
    seed: int = 0


@dataclass
class PipelineConfig:
    output: str = ""
    tokenize: bool = True
    lower_remove_accent: bool = False
    pre_segmented: list[str] = field(default_factory=list)
    segmenters: dict[str, str] = field(default_factory=dict)  # lang -> jieba, cjk-chars... (tokenize --segmenter)
    nfc: bool = False
    drop_invisible: bool = False
    segmentation: Literal["bpe", "sentencepiece"] = "bpe"
    bpe: BPEConfig = field(default_factory=BPEConfig)
    sentencepiece: SentencePieceConfig = field(default_factory=SentencePieceConfig)
    mono: dict[str, dict[str, str]] = field(default_factory=dict)
    para: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    workers: int = 0
    errors: Literal["strict", "replace"] = "strict"

    def validate(self) -> None:
        if not self.output:
            raise XLMError("output: required (the folder to write)")
        if not self.mono and not self.para:
            raise XLMError("mono/para: no input files given")
        for lang, splits in self.mono.items():
            _check_lang(lang, f"mono.{lang}")
            _check_splits(splits, f"mono.{lang}")
        for pair, splits in self.para.items():
            l1, sep, l2 = pair.partition("-")
            if not sep or not _LANG.match(l1) or not _LANG.match(l2) or l1 == l2:
                raise XLMError(f"para.{pair}: expected a pair of two different language codes like 'en-fr'")
            if l1 > l2:
                raise XLMError(
                    f"para.{pair}: write the pair in alphabetical order, '{l2}-{l1}' (file names use l1 < l2)"
                )
            _check_splits(splits, f"para.{pair}")
            for split, files in splits.items():
                if not isinstance(files, dict) or set(files) != {l1, l2}:
                    raise XLMError(f"para.{pair}.{split}: expected exactly the keys {l1} and {l2}, got {sorted(files)}")
        for lang in self.pre_segmented:
            _check_lang(lang, "pre_segmented")
        from xlm.data.text.segment import CHOICES

        for lang, name in self.segmenters.items():
            _check_lang(lang, f"segmenters.{lang}")
            if name not in CHOICES:
                raise XLMError(f"segmenters.{lang}: unknown segmenter {name!r}; choose one of {', '.join(CHOICES)}")
            if lang in self.pre_segmented:
                raise XLMError(f"segmenters.{lang}: {lang} is also listed in pre_segmented; choose one")
        if self.workers < 0:
            raise XLMError(f"workers: must be >= 0 (0 = one per core), got {self.workers}")
        side = self.bpe if self.segmentation == "bpe" else self.sentencepiece
        has_train = any("train" in s for s in [*self.mono.values(), *self.para.values()])
        if not side.vocab and not has_train:
            raise XLMError("mono/para: a train file is needed to learn the vocabulary (or give an existing one)")
        if self.segmentation == "bpe":
            b = self.bpe
            if bool(b.n_codes) == bool(b.codes):
                raise XLMError("bpe: give either n_codes (to learn codes) or codes (an existing codes file)")
            if b.n_codes < 0:
                raise XLMError(f"bpe.n_codes: must be positive, got {b.n_codes}")
            if b.vocab and not b.codes:
                raise XLMError("bpe.vocab: an existing vocabulary needs the codes it was made with (bpe.codes)")
        else:
            s = self.sentencepiece
            if bool(s.vocab_size) == bool(s.model):
                raise XLMError("sentencepiece: give either vocab_size (to train a model) or model (an existing one)")
            if s.vocab and not s.model:
                raise XLMError("sentencepiece.vocab: an existing vocabulary needs its model (sentencepiece.model)")
            if not 0 < s.character_coverage <= 1:
                raise XLMError("sentencepiece.character_coverage: must be in (0, 1]")


def _check_lang(lang: str, key: str) -> None:
    if not _LANG.match(lang):
        raise XLMError(f"{key}: {lang!r} is not a language code like 'en' (lowercase letters)")


def _check_splits(splits: Any, key: str) -> None:
    if not isinstance(splits, dict) or not splits:
        raise XLMError(f"{key}: expected a mapping of splits ({', '.join(SPLITS)}) to files")
    for split in splits:
        if split not in SPLITS:
            raise XLMError(f"{key}.{split}: unknown split; valid splits: {', '.join(SPLITS)}")


def load_pipeline_config(path: str | os.PathLike) -> PipelineConfig:
    """Read a data-pipeline YAML strictly: unknown keys, wrong types and missing files name the key."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as e:
        raise XLMError(f"{path}: cannot read config: {e.strerror}") from None
    except UnicodeDecodeError:
        raise XLMError(f"{path}: config is not valid UTF-8") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise XLMError(f"{path}:{mark.line + 1 if mark else 1}: invalid YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(data, dict):
        raise XLMError(f"{path}: top level must be a mapping")
    try:
        cfg = from_dict(PipelineConfig, data)
        cfg.validate()
        for key, file in _input_files(cfg):
            if not Path(file).is_file():
                raise XLMError(f"{key}: file {file!r} not found")
    except XLMError as e:
        raise XLMError(f"{path}: {e}") from None
    return cfg


def _input_files(cfg: PipelineConfig) -> list[tuple[str, str]]:
    """(config key, path) of every file the config names."""
    out = [(f"mono.{lang}.{split}", file) for lang, splits in cfg.mono.items() for split, file in splits.items()]
    out += [
        (f"para.{pair}.{split}.{lang}", file)
        for pair, splits in cfg.para.items()
        for split, files in splits.items()
        for lang, file in files.items()
    ]
    side = cfg.bpe if cfg.segmentation == "bpe" else cfg.sentencepiece
    for name in ("codes", "model", "vocab"):
        if getattr(side, name, ""):
            out.append((f"{cfg.segmentation}.{name}", getattr(side, name)))
    return out


# -- the plan ----------------------------------------------------------------------------------------------
@dataclass
class Corpus:
    """One raw file; ``key`` is its data name, e.g. ``train.en-fr.fr``, used for every stage's file."""

    key: str
    split: str
    lang: str
    raw: str
    workers: int = 1  # processes for this file's steps: its share of the cores, by size


def corpora(cfg: PipelineConfig, workers: int = 1) -> list[Corpus]:
    """Every raw file, each given a share of ``workers`` proportional to its size.

    Steps of different files run in parallel; the share lets one big file among small ones still
    use every core, while the total stays near ``workers`` processes.
    """
    mono = [
        (f"{split}.{lang}", split, lang, file)
        for lang, s in sorted(cfg.mono.items())
        for split, file in sorted(s.items())
    ]
    para = [
        (f"{split}.{pair}.{lang}", split, lang, file)
        for pair, splits in sorted(cfg.para.items())
        for split, files in sorted(splits.items())
        for lang, file in sorted(files.items())
    ]
    items = [Corpus(*item) for item in mono + para]
    sizes = [os.path.getsize(c.raw) for c in items]
    for c, size in zip(items, sizes):
        c.workers = max(1, min(workers, round(workers * size / max(sum(sizes), 1))))
    return items


def copy_vocab(src: str, dst: str) -> None:
    from xlm.data.dictionary import Dictionary

    Dictionary.read_vocab(src).write(dst)  # validates it, too


def copy_file(src: str, dst: str) -> None:
    from xlm.io import atomic_write_bytes

    atomic_write_bytes(dst, Path(src).read_bytes())


def build_vocab(inputs: list[str], output: str, errors: textio.Errors = "strict", workers: int = 1) -> int:
    """``get-vocab`` minus the special words (``<s>``, ``<unk>``...), which a vocabulary must not hold.

    binarize drops such tokens from the data, as the original does. Returns the number of words.
    """
    from xlm.data.bpe import count_words
    from xlm.data.dictionary import SPECIAL_WORDS
    from xlm.io import atomic_open

    counts = count_words(inputs, progress=False, workers=workers, errors=errors, step="get-vocab")
    for word in SPECIAL_WORDS:
        counts.pop(word.encode(), None)
    with atomic_open(output, "wb") as f:
        f.write(b"".join(b"%s %d\n" % item for item in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))))
    return len(counts)


Staged = dict[str, tuple[str, str | None]]  # corpus key -> (file, name of the step writing it, if any)


def _bpe_steps(
    plan: Plan, cfg: PipelineConfig, items: list[Corpus], text: Staged, out: Path, workers: int
) -> tuple[Staged, str]:
    from xlm.data import bpe

    codes, vocab, b = str(out / "codes"), str(out / "vocab"), cfg.bpe
    train = [text[c.key] for c in items if c.split == "train"]
    if b.codes:
        model_step = plan.add("copy codes", copy_file, [b.codes], [codes], src=b.codes, dst=codes)
    else:
        files = [f for f, _ in train]
        model_step = plan.add(
            "learn-bpe",
            bpe.learn_bpe,
            files,
            [codes],
            [d for _, d in train],
            inputs=files,
            n_codes=b.n_codes,
            output=codes,
            progress=False,
            workers=workers,
            errors=cfg.errors,
        )
    vocab_step = plan.add("copy vocab", copy_vocab, [b.vocab], [vocab], src=b.vocab, dst=vocab) if b.vocab else None
    restrict = vocab if b.vocab else None  # a given vocabulary also restricts BPE, as fastBPE's applybpe option
    segmented: Staged = {}
    for c in items:
        src, dep = text[c.key]
        dst = str(out / "work" / "bpe" / c.key)
        inputs = [src, codes] + ([vocab] if restrict else [])
        segmented[c.key] = (
            dst,
            plan.add(
                f"apply-bpe {c.key}",
                bpe.apply_bpe_file,
                inputs,
                [dst],
                [dep, model_step, vocab_step],
                codes=codes,
                input=src,
                output=dst,
                vocab=restrict,
                workers=c.workers,
                progress=False,
                errors=cfg.errors,
            ),
        )
    if not vocab_step:
        seg = [segmented[c.key] for c in items if c.split == "train"]
        files = [f for f, _ in seg]
        vocab_step = plan.add(
            "get-vocab",
            build_vocab,
            files,
            [vocab],
            [d for _, d in seg],
            inputs=files,
            output=vocab,
            errors=cfg.errors,
            workers=workers,
        )
    return segmented, vocab_step


def _spm_steps(
    plan: Plan, cfg: PipelineConfig, items: list[Corpus], text: Staged, out: Path, workers: int
) -> tuple[Staged, str]:
    from xlm.data import sentencepiece as spm

    model, vocab, s = str(out / "spm.model"), str(out / "vocab"), cfg.sentencepiece
    train = [text[c.key] for c in items if c.split == "train"]
    if s.model:
        model_step = plan.add("copy spm model", copy_file, [s.model], [model], src=s.model, dst=model)
    else:  # one thread: the model must not depend on the machine's core count
        files = [f for f, _ in train]
        model_step = plan.add(
            "spm-train",
            spm.train_spm,
            files,
            [model],
            [d for _, d in train],
            inputs=files,
            output=model,
            vocab_size=s.vocab_size,
            model_type=s.model_type,
            character_coverage=s.character_coverage,
            input_sentence_size=s.input_sentence_size,
            seed=s.seed,
            threads=1,
            errors=cfg.errors,
        )
    segmented: Staged = {}
    for c in items:
        src, dep = text[c.key]
        dst = str(out / "work" / "spm" / c.key)
        segmented[c.key] = (
            dst,
            plan.add(
                f"spm-encode {c.key}",
                spm.encode_file,
                [src, model],
                [dst],
                [dep, model_step],
                model=model,
                input=src,
                output=dst,
                workers=c.workers,
                errors=cfg.errors,
            ),
        )
    if s.vocab:
        return segmented, plan.add("copy vocab", copy_vocab, [s.vocab], [vocab], src=s.vocab, dst=vocab)
    seg = [segmented[c.key] for c in items if c.split == "train"]
    files = [f for f, _ in seg]
    return segmented, plan.add(
        "spm-vocab",
        spm.write_spm_vocab,
        files + [model],
        [vocab],
        [d for _, d in seg],
        model=model,
        encoded=files,
        output=vocab,
    )


def build_plan(cfg: PipelineConfig, workers: int = 1) -> Plan:
    """Every step of the pipeline (functions live in modules, so that worker processes can load them)."""
    from xlm.data.binarize import binarize_file
    from xlm.data.tokenize import tokenize_file

    out, plan, items = Path(cfg.output), Plan(), corpora(cfg, workers)
    text: Staged = {}
    for c in items:
        if not cfg.tokenize:
            text[c.key] = (c.raw, None)
            continue
        dst = str(out / "work" / "tok" / c.key)
        text[c.key] = (
            dst,
            plan.add(
                f"tokenize {c.key}",
                tokenize_file,
                [c.raw],
                [dst],
                input=c.raw,
                output=dst,
                **tokenizer_options(cfg, c.lang),
                workers=c.workers,
                errors=cfg.errors,
            ),
        )
    segment = _bpe_steps if cfg.segmentation == "bpe" else _spm_steps
    segmented, vocab_step = segment(plan, cfg, items, text, out, workers)
    vocab = str(out / "vocab")
    for c in items:
        src, dep = segmented[c.key]
        prefix = str(out / c.key)
        plan.add(
            f"binarize {c.key}",
            binarize_file,
            [src, vocab],
            [prefix + ".bin", prefix + ".idx"],
            [dep, vocab_step],
            vocab=vocab,
            input=src,
            output_prefix=prefix,
            workers=c.workers,
            errors=cfg.errors,
            copy_vocab=False,
            meta={"source": c.raw},
        )
    return plan


# -- running ----------------------------------------------------------------------------------------------
def tokenizer_options(cfg: PipelineConfig, lang: str) -> dict[str, Any]:
    """The keyword arguments of :class:`xlm.data.tokenize.Tokenizer` (and ``tokenize_file``) for ``lang``."""
    return dict(
        lang=lang,
        lower_remove_accent=cfg.lower_remove_accent,
        pre_segmented=lang in cfg.pre_segmented,
        segmenter=cfg.segmenters.get(lang),
        nfc=cfg.nfc,
        drop_invisible=cfg.drop_invisible,
    )


def _languages(cfg: PipelineConfig) -> list[str]:
    return sorted(set(cfg.mono) | {lang for pair in cfg.para for lang in pair.split("-")})


def _tokenizers(cfg: PipelineConfig) -> dict:
    """One tokenizer per language, built before any work so that a missing segmenter stops the run."""
    from xlm.data.tokenize import Tokenizer

    out = {}
    for lang in _languages(cfg):
        try:
            out[lang] = Tokenizer(**tokenizer_options(cfg, lang))
        except XLMError as e:
            raise XLMError(f"{e} (in a config: segmenters: {{{lang}: NAME}} or pre_segmented: [{lang}])") from None
    return out

def _check_alignment(cfg: PipelineConfig) -> None:
    for pair, splits in sorted(cfg.para.items()):
        for split, files in sorted(splits.items()):
            counts = {lang: textio.count_lines(path) for lang, path in sorted(files.items())}
            if len(set(counts.values())) > 1:
                detail = " but ".join(f"{lang} ({files[lang]}) has {n} lines" for lang, n in counts.items())
                raise XLMError(f"para.{pair}.{split}: parallel files differ in length: {detail}")


def run_pipeline(
    config: str | os.PathLike | PipelineConfig,
    *,
    workers: int | None = None,
    progress: bool = False,
    log: Callable[[str], None] = lambda _: None,
) -> RunReport:
    """Run (or finish) the pipeline described by ``config``; see the module docstring."""
    cfg = config if isinstance(config, PipelineConfig) else load_pipeline_config(config)
    out = Path(cfg.output)
    with exclusive_folder(out):
        _check_alignment(cfg)
        tokenizers = _tokenizers(cfg) if cfg.tokenize else {}
        n_workers = textio.resolve_workers(workers or cfg.workers or None)
        plan = build_plan(cfg, n_workers)
        report = run_steps(plan.steps, out / "work" / "stamps", workers=n_workers, progress=progress, log=log)
        write_text_settings(out, cfg, tokenizers)
        return report


TEXT_SETTINGS = "preprocess.json"


def write_text_settings(out: Path, cfg: PipelineConfig, tokenizers: dict | None = None) -> None:
    """Record how raw text becomes tokens, so checkpoints (and ``encode``) can redo it on new text.

    Keys: those of :meth:`xlm.data.tokenize.Tokenizer.settings` merged over every language
    (``tokenize``, ``tokenizer``, ``lower_remove_accent``, ``nfc``, ``drop_invisible``,
    ``moses_whitespace``, ``pre_segmented``, ``segmenters`` with each language's segmenter and
    library version), plus ``segmentation`` (bpe or sentencepiece). Rebuild a language's
    tokenizer with ``Tokenizer.from_settings(lang, read_text_settings(out))``.
    """
    from xlm.data.tokenize import merge_settings

    if cfg.tokenize:
        settings: dict[str, Any] = {}
        for tok in (tokenizers if tokenizers is not None else _tokenizers(cfg)).values():
            settings = merge_settings(settings, tok.settings())
    else:
        settings = {"tokenize": False, "lower_remove_accent": cfg.lower_remove_accent,
                    "pre_segmented": list(cfg.pre_segmented)}  # fmt: skip
    settings["segmentation"] = cfg.segmentation
    text = json.dumps(settings, indent=2, sort_keys=True) + "\n"
    path = out / TEXT_SETTINGS
    if not path.is_file() or path.read_text(encoding="utf-8") != text:  # a rerun changes nothing
        atomic_write_text(path, text)


def read_text_settings(data_path: str | os.PathLike) -> dict:
    """The settings :func:`write_text_settings` (or ``tokenize --settings-out``) left in a data
    folder ({} when absent or unreadable)."""
    try:
        return json.loads((Path(data_path) / TEXT_SETTINGS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
