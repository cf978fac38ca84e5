"""SentencePiece as an alternative to BPE codes (XLM-R-style vocabularies).

The flow mirrors BPE: ``train_spm`` (like learn-bpe) -> ``encode_file`` (like apply-bpe: one line of
space-separated pieces per input line) -> ``write_spm_vocab`` (like get-vocab) -> ``binarize``.
The vocabulary holds every piece of the model (control and unknown pieces excluded), counted in
the encoded training text and sorted by decreasing count (ties in model order), so it is in our
``TOKEN COUNT`` format, ``max_vocab`` keeps the most frequent pieces, and pieces unseen in the
training text still get an id (count 0). Pieces never contain ``' '`` (SentencePiece writes spaces
as ``▁``), so binarize's split on spaces recovers them exactly.

``sentencepiece`` is optional; it is imported only here, with a clear message when missing.
"""

from __future__ import annotations

import io
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any, Literal

from xlm.data import textio
from xlm.data.dictionary import SPECIAL_WORDS
from xlm.errors import XLMError
from xlm.io import atomic_open, atomic_write_bytes

ModelType = Literal["unigram", "bpe", "char", "word"]


def require_sentencepiece() -> Any:
    try:
        import sentencepiece
    except ImportError:
        raise XLMError(
            "sentencepiece is not installed: pip install sentencepiece (or pip install -e '.[spm]')"
        ) from None
    return sentencepiece


def load_model(path: str | os.PathLike) -> Any:
    """A ``SentencePieceProcessor``; a missing or corrupt model is an XLMError."""
    spm = require_sentencepiece()
    try:
        data = open(path, "rb").read()
    except OSError as e:
        raise XLMError(f"{path}: cannot read SentencePiece model: {e.strerror}") from None
    try:
        return spm.SentencePieceProcessor(model_proto=data)
    except (RuntimeError, OSError, TypeError) as e:
        raise XLMError(f"{path}: not a SentencePiece model ({_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _iter_lines(inputs: Sequence[str | os.PathLike], errors: textio.Errors) -> Iterator[str]:
    for path in inputs:
        source = textio.display_name(path)
        with textio.open_input(path) as f:
            for chunk in textio.iter_chunks(f):
                yield from textio.decode_chunk(chunk, source, errors)[:-1].split("\n")


def train_spm(
    inputs: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    vocab_size: int,
    *,
    model_type: ModelType = "unigram",
    character_coverage: float = 0.9995,
    input_sentence_size: int = 2_000_000,
    seed: int = 0,
    threads: int | None = None,
    errors: textio.Errors = "strict",
) -> None:
    """Train a model on the lines of ``inputs`` and write it (atomically) to ``output``.

    ``input_sentence_size`` lines are sampled (seeded) when the input is larger. ``vocab_size`` is
    an upper bound: on a small corpus the model may be smaller (``hard_vocab_limit=false``).
    SentencePiece's own ``<s>``/``</s>`` are disabled: XLM adds its specials in the dictionary.
    """
    spm = require_sentencepiece()
    if vocab_size < 2:
        raise XLMError(f"--vocab-size must be at least 2, got {vocab_size}")
    failure: list[BaseException] = []

    def lines() -> Iterator[str]:
        try:
            yield from _iter_lines(inputs, errors)
        except BaseException as e:  # SentencePiece would turn it into a RuntimeError: keep the original
            failure.append(e)
            raise

    buf = io.BytesIO()
    spm.set_random_generator_seed(seed)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=lines(),
            model_writer=buf,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=character_coverage,
            input_sentence_size=input_sentence_size,
            shuffle_input_sentence=True,
            hard_vocab_limit=False,
            bos_id=-1,
            eos_id=-1,
            unk_id=0,
            num_threads=threads or textio.resolve_workers(None),
            minloglevel=2,
        )
    except RuntimeError as e:
        if failure:
            raise failure[0] from None
        raise XLMError(f"sentencepiece training failed: {_first_line(e)}") from None
    atomic_write_bytes(output, buf.getvalue())


# -- encoding --------------------------------------------------------------------------------------------
_worker: tuple[Any, str, textio.Errors] | None = None
CHUNK_BYTES = 1 << 20


def _init_worker(model: str, source: str, errors: textio.Errors) -> None:
    global _worker
    _worker = (load_model(model), source, errors)


def _encode_chunk(chunk: textio.Chunk) -> tuple[bytes, int]:
    assert _worker is not None
    sp, source, errors = _worker
    lines = textio.decode_chunk(chunk, source, errors)[:-1].split("\n")
    pieces = sp.encode(lines, out_type=str)
    return ("\n".join(" ".join(p) for p in pieces) + "\n").encode("utf-8"), len(chunk.data)


def encode_file(
    model: str | os.PathLike,
    input: str | os.PathLike,
    output: str | os.PathLike,
    *,
    workers: int | None = None,
    progress: bool = False,
    errors: textio.Errors = "strict",
    chunk_bytes: int = CHUNK_BYTES,
) -> int:
    """Write one line of space-separated pieces per input line (``-`` = stdin/stdout); returns lines."""
    load_model(model)  # fail before any output when the model is bad
    source = textio.display_name(input)
    return textio.transform_file(
        input, output, _encode_chunk, initializer=_init_worker, initargs=(str(model), source, errors),
        workers=workers, progress=progress, desc="spm-encode", chunk_bytes=chunk_bytes,
    )


# -- vocabulary -------------------------------------------------------------------------------------------
def write_spm_vocab(model: str | os.PathLike, encoded: Sequence[str | os.PathLike], output: str | os.PathLike,
                    order: Literal["count", "model"] = "count") -> int:
    """Write every piece of ``model`` as ``PIECE COUNT``, counted in the ``encoded`` files; returns pieces.

    ``order="model"`` keeps the model's piece order with every count 0, for continued pretraining of
    an XLM-R model: its vocabulary is the SentencePiece order (fairseq's ids), and a run whose words
    come in that order exports back to ``xlm-roberta`` with its ``sentencepiece.bpe.model``. The
    counts are 0 because the order is not by frequency: ``max_vocab`` would cut arbitrary pieces.
    """
    sp = load_model(model)
    counts: Counter = Counter()
    for path in encoded:
        source = textio.display_name(path)
        with textio.open_input(path) as f:
            for chunk in textio.iter_chunks(f):
                counts.update(textio.decode_chunk(chunk, source).replace("\n", " ").split(" "))
    pieces = [
        sp.id_to_piece(i)
        for i in range(sp.get_piece_size())
        if not (sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i))
    ]
    pieces = [p for p in pieces if p not in SPECIAL_WORDS]
    if order == "model":
        with atomic_open(output, "w") as f:
            f.writelines(f"{p} 0\n" for p in pieces)
        return len(pieces)
    ranked = sorted(range(len(pieces)), key=lambda i: (-counts.get(pieces[i], 0), i))
    with atomic_open(output, "w") as f:
        for i in ranked:
            f.write(f"{pieces[i]} {counts.get(pieces[i], 0)}\n")
    return len(pieces)
