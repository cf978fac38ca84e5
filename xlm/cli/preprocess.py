"""``python preprocess.py SUBCOMMAND ...`` (also ``xlm-preprocess``): raw text to binarized training data.

Each subcommand imports its module lazily, so ``binarize`` does not pay for the tokenizer's tables or torch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from xlm.cli.common import add_common_flags, log, progress_enabled, run_cli
from xlm.data import provenance


def _tokenize(args: argparse.Namespace) -> None:
    from xlm.data.tokenize import Tokenizer, tokenize_file, write_settings

    options = dict(
        lower_remove_accent=args.lower_remove_accent,
        pre_segmented=args.pre_segmented,
        segmenter=args.segmenter,
        nfc=args.nfc,
        drop_invisible=args.drop_invisible,
        moses_whitespace=args.moses_whitespace,
    )
    tokenizer = Tokenizer(args.lang, **options)  # refuses bad settings before any output is touched
    n = tokenize_file(
        args.input, args.output, args.lang, workers=args.workers, progress=progress_enabled(args), errors=args.errors,
        **options,
    )  # fmt: skip
    seg = tokenizer.segmenter + (f" ({tokenizer.library_version})" if tokenizer.library_version else "")
    log(f"tokenized {n} lines ({args.lang}: {seg})")
    provenance.write_record(args.output, provenance.tokenize_record(args.lang, tokenizer))
    if args.settings_out:
        write_settings(args.settings_out, tokenizer)
        log(f"settings recorded in {args.settings_out}")


def _learn_bpe(args: argparse.Namespace) -> None:
    from xlm.data.bpe import learn_bpe

    learn_bpe(
        args.inputs,
        args.n_codes,
        args.output,
        progress=progress_enabled(args),
        workers=args.workers,
        errors=args.errors,
    )


def _apply_bpe(args: argparse.Namespace) -> None:
    from xlm.data.bpe import apply_bpe_file

    apply_bpe_file(
        args.codes,
        args.input,
        args.output,
        args.vocab,
        workers=args.workers,
        progress=progress_enabled(args),
        errors=args.errors,
    )
    provenance.write_record(args.output, provenance.segment_record(args.input, "bpe", args.codes))


def _get_vocab(args: argparse.Namespace) -> None:
    from xlm.data.bpe import get_vocab

    get_vocab(args.inputs, args.output, progress=progress_enabled(args), workers=args.workers, errors=args.errors)


def _binarize(args: argparse.Namespace) -> None:
    from xlm.data.binarize import binarize_file

    install = provenance.plan_install(args.input, Path(args.output_prefix).parent)  # refuses before writing
    stats = binarize_file(
        args.vocab,
        args.input,
        args.output_prefix,
        workers=args.workers,
        progress=progress_enabled(args),
        errors=args.errors,
        allow_split_vocab_words=args.allow_split_vocab_words,
    )
    log(stats.summary())
    for written in install.apply():
        log(f"recorded how the text was prepared: {written}")
    if stats.dropped:
        log(
            f"warning: dropped {sum(stats.dropped.values())} tokens spelled like special words "
            f"({', '.join(sorted(stats.dropped))}); the original preprocess.py drops them too"
        )


def _spm_train(args: argparse.Namespace) -> None:
    from xlm.data.sentencepiece import train_spm

    train_spm(
        args.inputs,
        args.output,
        args.vocab_size,
        model_type=args.model_type,
        character_coverage=args.character_coverage,
        input_sentence_size=args.input_sentence_size,
        seed=args.seed,
        threads=args.workers,
        errors=args.errors,
    )
    log(f"wrote {args.output}")


def _spm_encode(args: argparse.Namespace) -> None:
    from xlm.data.sentencepiece import encode_file

    n = encode_file(
        args.model, args.input, args.output, workers=args.workers, progress=progress_enabled(args), errors=args.errors
    )
    provenance.write_record(args.output, provenance.segment_record(args.input, "sentencepiece", args.model))
    log(f"encoded {n} lines")


def _spm_vocab(args: argparse.Namespace) -> None:
    from xlm.data.sentencepiece import write_spm_vocab

    n = write_spm_vocab(args.model, args.inputs, args.output)
    log(f"wrote {n} pieces to {args.output}")


def _run(args: argparse.Namespace) -> None:
    from xlm.data.pipeline import run_pipeline

    report = run_pipeline(args.config, workers=args.workers, progress=progress_enabled(args), log=log)
    log(f"done: {len(report.ran)} steps run, {len(report.skipped)} already up to date")


def _convert_original(args: argparse.Namespace) -> None:
    from xlm.data.original import convert_original

    data = convert_original(args.input, args.output_prefix)
    log(
        f"converted {len(data.positions)} sentences, {len(data.dico)} words in the dictionary "
        f"-> {args.output_prefix}.bin/.idx and {Path(args.output_prefix).parent / 'vocab'}"
    )


def _check(args: argparse.Namespace) -> None:
    from xlm.data.dictionary import Dictionary
    from xlm.data.indexed import IndexedDataset
    from xlm.errors import XLMError

    ds = IndexedDataset(args.prefix)
    ds.validate()
    vocab = Path(args.vocab) if args.vocab else Path(args.prefix).parent / "vocab"
    if vocab.exists():
        dico = Dictionary.read_vocab(vocab, strict=True)  # refuses lines the original would skip
        if ds.vocab_fingerprint and dico.fingerprint() != ds.vocab_fingerprint:
            raise XLMError(
                f"{args.prefix}.idx: built with vocabulary {ds.vocab_fingerprint}, but {vocab} is {dico.fingerprint()}"
            )
    json.dump(ds.header, sys.stdout, indent=1, sort_keys=True)
    print()
    log(
        f"ok: {len(ds)} sentences, {ds.n_tokens - len(ds)} words"
        + (f", vocabulary {vocab} matches" if vocab.exists() else "")
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="preprocess.py",
        description="XLM data preprocessing: raw text -> "
        "tokens -> BPE (or SentencePiece) -> binarized .bin/.idx. Use '-' for stdin/stdout.",
    )
    add_common_flags(parser, progress=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func, help: str, workers: bool = True, errors: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        add_common_flags(p)
        if workers:
            p.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core)")
        if errors:
            p.add_argument(
                "--errors",
                choices=["strict", "replace"],
                default="strict",
                help="invalid UTF-8: 'strict' stops with file:line (default), 'replace' writes U+FFFD",
            )
        return p

    p = command("tokenize", _tokenize, "the original tokenize.sh: Moses perl scripts (exact), or a word segmenter")
    p.add_argument("--lang", required=True, help="language code (th, zh, ja need a word segmenter: see --segmenter)")
    p.add_argument("--lower-remove-accent", action="store_true", help="lowercase and strip accents (XLM 1024 models)")
    p.add_argument(
        "--pre-segmented",
        action="store_true",
        help="input is already word-segmented (e.g. by a Chinese segmenter): normalize only",
    )
    p.add_argument(
        "--segmenter",
        default=None,
        help="moses (default), or for languages without spaces pythainlp (th), jieba (zh), fugashi (ja) "
        "(default for those when installed), cjk-chars (one token per CJK ideograph), pre-segmented",
    )
    p.add_argument("--nfc", action="store_true", help="Unicode NFC first: composed and decomposed text alike")
    p.add_argument(
        "--drop-invisible",
        action="store_true",
        help="drop soft hyphens, zero-width joiners, direction marks, BOM (Moses makes them spaces)",
    )
    p.add_argument(
        "--moses-whitespace",
        action="store_true",
        help="keep perl's stray spaces and blank lines byte for byte (default: single-space-separated tokens)",
    )
    p.add_argument(
        "--settings-out",
        default=None,
        metavar="JSON",
        help="record the settings (merged per language) in this file, e.g. DATA/preprocess.json",
    )
    p.add_argument("input", help="raw text, '-' for stdin")
    p.add_argument("output", help="tokenized text, '-' for stdout")

    p = command("learn-bpe", _learn_bpe, "learn BPE codes (fastBPE learnbpe)")
    p.add_argument("--n-codes", type=int, required=True, help="number of merges")
    p.add_argument("--output", required=True, help="codes file to write")
    p.add_argument("inputs", nargs="+", help="tokenized training text (all languages for a joint vocabulary)")

    p = command("apply-bpe", _apply_bpe, "apply BPE codes (fastBPE applybpe)")
    p.add_argument("--codes", required=True)
    p.add_argument("--vocab", default=None, help="only produce subwords in this vocabulary (fastBPE's vocab option)")
    p.add_argument("input", help="tokenized text, '-' for stdin")
    p.add_argument("output", help="BPE'd text, '-' for stdout")

    p = command("get-vocab", _get_vocab, "count tokens of BPE'd text into a vocabulary (fastBPE getvocab)")
    p.add_argument("--output", required=True, help="vocabulary file (TOKEN COUNT lines) to write")
    p.add_argument("inputs", nargs="+", help="BPE'd training text")

    p = command("binarize", _binarize, "BPE'd text -> OUTPUT_PREFIX.bin/.idx, vocabulary copied beside it")
    p.add_argument("--vocab", required=True, help="vocabulary (TOKEN COUNT lines)")
    p.add_argument(
        "--allow-split-vocab-words",
        action="store_true",
        help="binarize even text holding vocabulary words with CR, TAB, NBSP... in them, which the split "
        "(the original's str.split) cuts, as the original does (default: refuse; see docs/preprocessing.md)",
    )
    p.add_argument("input", help="BPE'd text, '-' for stdin")
    p.add_argument("output_prefix", help="e.g. data/processed/train.en")

    p = command("spm-train", _spm_train, "train a SentencePiece model (alternative to BPE codes)")
    p.add_argument("--vocab-size", type=int, required=True, help="number of pieces (an upper bound)")
    p.add_argument("--output", required=True, help="model file to write, e.g. spm.model")
    p.add_argument("--model-type", choices=["unigram", "bpe", "char", "word"], default="unigram")
    p.add_argument("--character-coverage", type=float, default=0.9995)
    p.add_argument("--input-sentence-size", type=int, default=2_000_000, help="lines sampled for training")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("inputs", nargs="+", help="training text")

    p = command("spm-encode", _spm_encode, "text -> space-separated SentencePiece pieces (then binarize)")
    p.add_argument("--model", required=True)
    p.add_argument("input", help="text, '-' for stdin")
    p.add_argument("output", help="pieces, '-' for stdout")

    p = command(
        "spm-vocab",
        _spm_vocab,
        "vocabulary of every piece of a model, counted in encoded training text",
        workers=False,
        errors=False,
    )
    p.add_argument("--model", required=True)
    p.add_argument("--output", required=True, help="vocabulary file (TOKEN COUNT lines) to write")
    p.add_argument("inputs", nargs="*", help="spm-encode output of the training text (for the counts)")

    p = command("run", _run, "the whole pipeline from one data config (rerunnable)", errors=False)
    p.add_argument("config", help="data-pipeline YAML, e.g. configs/data/msgcorpus_slice.yaml")

    p = command(
        "convert-original",
        _convert_original,
        "original XLM .pth data -> .bin/.idx + vocab (no code run)",
        workers=False,
        errors=False,
    )
    p.add_argument("input", help="a .pth written by the original preprocess.py")
    p.add_argument("output_prefix", help="e.g. data/processed/train.en")

    p = command("check", _check, "validate a binarized file and print its header", workers=False, errors=False)
    p.add_argument("prefix", help="e.g. data/processed/train.en (for train.en.bin/.idx)")
    p.add_argument("--vocab", default=None, help="vocabulary to compare with (default: the vocab file beside it)")
    return parser


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    args.func(args)
    return 0


def main(argv: list[str] | None = None) -> None:
    run_cli(_main, argv)


if __name__ == "__main__":
    main()
