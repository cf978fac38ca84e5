"""Binarized corpora: a memory-mapped token array (``.bin``) and an index of sentence offsets (``.idx``).

Layout, chosen so that opening a corpus of any size costs milliseconds and no RAM beyond the pages
touched, and so that nothing is pickled:

- ``PREFIX.bin``: every sentence's token ids followed by one ``</s>`` (id 1), back to back, in the
  smallest dtype that fits the vocabulary (``uint16`` below 65,536 words, else ``int32``). This is
  the original's flat ``sentences`` array, so stream datasets read it directly.
- ``PREFIX.idx``: the 8-byte magic ``XLMIDX1\\n``, a little-endian uint64 header length, a JSON header
  (dtype, counts, vocabulary size and fingerprint) padded to 8 bytes, then ``n_sentences + 1``
  int64 offsets: sentence ``i`` is ``bin[off[i] : off[i+1] - 1]`` and ``bin[off[i+1] - 1]`` is ``</s>``.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from pathlib import Path

import numpy as np

from xlm.data.dictionary import EOS_INDEX
from xlm.errors import XLMError
from xlm.io import default_file_mode

MAGIC = b"XLMIDX1\n"
VERSION = 1
_CHUNK = 1 << 20  # tokens buffered before a write


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    """The smallest integer dtype holding every id of a vocabulary of this size."""
    if vocab_size < 1 << 16:
        return np.dtype(np.uint16)
    if vocab_size < 1 << 31:
        return np.dtype(np.int32)
    raise XLMError(f"vocabulary of {vocab_size} words does not fit int32 ids")


def bin_path(prefix: str | os.PathLike) -> Path:
    return Path(f"{prefix}.bin")


def idx_path(prefix: str | os.PathLike) -> Path:
    return Path(f"{prefix}.idx")


class IndexedWriter:
    """Streams sentences to ``PREFIX.bin``/``PREFIX.idx`` with RAM independent of corpus size.

    Both files are written under temporary names and renamed only by :meth:`close`; use it as a
    context manager so that an exception removes the temporaries and leaves existing files alone.
    """

    def __init__(self, prefix: str | os.PathLike, vocab_size: int, vocab_fingerprint: str = ""):
        self.prefix = Path(prefix)
        self.prefix.parent.mkdir(parents=True, exist_ok=True)
        self.dtype = dtype_for_vocab(vocab_size)
        self.vocab_size = vocab_size
        self.vocab_fingerprint = vocab_fingerprint
        self.meta: dict = {}
        d = self.prefix.parent
        self._bin_tmp = tempfile.NamedTemporaryFile(
            dir=d, prefix=f".{self.prefix.name}.bin.", suffix=".tmp", delete=False
        )
        self._off_tmp = tempfile.NamedTemporaryFile(
            dir=d, prefix=f".{self.prefix.name}.off.", suffix=".tmp", delete=False
        )
        self._tok_buf: list[np.ndarray] = []
        self._off_buf: list[int] = [0]
        self._buffered = 0
        self.n_sentences = 0
        self.n_tokens = 0
        self._closed = False

    def add(self, ids: np.ndarray | list[int]) -> None:
        """Append one sentence (without its ``</s>``, which is added here)."""
        arr = np.asarray(ids, dtype=np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= self.vocab_size):
            raise XLMError(f"token id out of range [0, {self.vocab_size}) in sentence {self.n_sentences}")
        self._tok_buf.append(arr.astype(self.dtype))
        self._tok_buf.append(np.array([EOS_INDEX], dtype=self.dtype))
        self.n_tokens += arr.size + 1
        self.n_sentences += 1
        self._off_buf.append(self.n_tokens)
        self._buffered += arr.size + 1
        if self._buffered >= _CHUNK:
            self._flush()

    def add_flat(self, tokens: np.ndarray, ends: np.ndarray) -> None:
        """Append many sentences at once, already in ``.bin`` layout (each followed by its ``</s>``).

        ``ends[i]`` is the position just past sentence ``i``'s ``</s>`` in ``tokens``; the last one
        is ``len(tokens)``. This is the fast path for binarizing millions of sentences.
        """
        tokens = np.asarray(tokens)
        ends = np.asarray(ends, dtype=np.int64)
        if not len(ends):
            if len(tokens):
                raise XLMError("add_flat: tokens given without sentence ends")
            return
        if ends[-1] != len(tokens) or ends[0] < 1 or (np.diff(ends) < 1).any():
            raise XLMError("add_flat: sentence ends must increase strictly and finish at len(tokens)")
        if (tokens[ends - 1] != EOS_INDEX).any():
            raise XLMError("add_flat: every sentence must end with </s>")
        if tokens.min() < 0 or tokens.max() >= self.vocab_size:
            raise XLMError(f"token id out of range [0, {self.vocab_size}) near sentence {self.n_sentences}")
        self._flush()
        self._bin_tmp.write(tokens.astype(self.dtype, copy=False).tobytes())
        self._off_tmp.write((ends + self.n_tokens).astype("<i8").tobytes())
        self.n_tokens += len(tokens)
        self.n_sentences += len(ends)

    def _flush(self) -> None:
        if self._tok_buf:
            self._bin_tmp.write(np.concatenate(self._tok_buf).tobytes())
        if self._off_buf:
            self._off_tmp.write(np.asarray(self._off_buf, dtype="<i8").tobytes())
        self._tok_buf, self._off_buf, self._buffered = [], [], 0

    def close(self) -> None:
        """Write the index and rename both files into place (``.bin`` first, then ``.idx``)."""
        if self._closed:
            return
        self._flush()
        header = {
            "version": VERSION,
            "dtype": self.dtype.name,
            "n_sentences": self.n_sentences,
            "n_tokens": self.n_tokens,
            "vocab_size": self.vocab_size,
            "vocab_fingerprint": self.vocab_fingerprint,
            **self.meta,
        }
        blob = json.dumps(header, sort_keys=True).encode()
        blob += b" " * (-len(blob) % 8)
        self._off_tmp.flush()
        idx_tmp = tempfile.NamedTemporaryFile(
            dir=self.prefix.parent, prefix=f".{self.prefix.name}.idx.", suffix=".tmp", delete=False
        )
        for f in (idx_tmp, self._bin_tmp):
            os.fchmod(f.fileno(), default_file_mode())
        try:
            with idx_tmp:
                idx_tmp.write(MAGIC + struct.pack("<Q", len(blob)) + blob)
                self._off_tmp.seek(0)
                while chunk := self._off_tmp.read(1 << 20):
                    idx_tmp.write(chunk)
                idx_tmp.flush()
                os.fsync(idx_tmp.fileno())
            self._bin_tmp.flush()
            os.fsync(self._bin_tmp.fileno())
            self._bin_tmp.close()
            self._off_tmp.close()
            os.unlink(self._off_tmp.name)
            os.replace(self._bin_tmp.name, bin_path(self.prefix))
            os.replace(idx_tmp.name, idx_path(self.prefix))
        except BaseException:
            for f in (idx_tmp.name, self._bin_tmp.name, self._off_tmp.name):
                if os.path.exists(f):
                    os.unlink(f)
            raise
        self._closed = True

    def abort(self) -> None:
        for f in (self._bin_tmp, self._off_tmp):
            f.close()
            if os.path.exists(f.name):
                os.unlink(f.name)
        self._closed = True

    def __enter__(self) -> IndexedWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def read_index_header(prefix: str | os.PathLike) -> tuple[dict, int]:
    """Parse ``PREFIX.idx``'s header; returns it and the byte offset of the offsets array."""
    path = idx_path(prefix)
    try:
        with open(path, "rb") as f:
            head = f.read(16)
            if len(head) < 16 or head[:8] != MAGIC:
                raise XLMError(f"{path}: not an xlm index file (bad magic)")
            (n,) = struct.unpack("<Q", head[8:])
            if n > 1 << 20:
                raise XLMError(f"{path}: corrupt header length {n}")
            blob = f.read(n)
    except OSError as e:
        raise XLMError(f"{path}: cannot read index: {e.strerror}") from None
    if len(blob) != n:
        raise XLMError(f"{path}: truncated header")
    try:
        header = json.loads(blob.decode())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise XLMError(f"{path}: corrupt JSON header") from None
    if not isinstance(header, dict):
        raise XLMError(f"{path}: corrupt JSON header")
    for key, typ in (("version", int), ("dtype", str), ("n_sentences", int), ("n_tokens", int), ("vocab_size", int)):
        if not isinstance(header.get(key), typ) or (typ is int and header[key] < 0):
            raise XLMError(f"{path}: header field {key!r} missing or invalid")
    if header["version"] != VERSION:
        raise XLMError(f"{path}: unsupported index version {header['version']}")
    if header["dtype"] not in ("uint16", "int32"):
        raise XLMError(f"{path}: unsupported dtype {header['dtype']!r}")
    if np.dtype(header["dtype"]) != dtype_for_vocab(max(header["vocab_size"], 1)):
        raise XLMError(f"{path}: dtype {header['dtype']} does not match vocabulary size {header['vocab_size']}")
    return header, 16 + n


class IndexedDataset:
    """Read-only view of a binarized corpus; nothing is loaded until it is indexed."""

    def __init__(self, prefix: str | os.PathLike):
        self.prefix = Path(prefix)
        header, start = read_index_header(prefix)
        self.header = header
        self.dtype = np.dtype(header["dtype"])
        self.vocab_size: int = header["vocab_size"]
        self.vocab_fingerprint: str = header.get("vocab_fingerprint", "")
        n, t = header["n_sentences"], header["n_tokens"]
        ipath, bpath = idx_path(prefix), bin_path(prefix)
        expected = start + 8 * (n + 1)
        size = ipath.stat().st_size
        if size != expected:
            raise XLMError(f"{ipath}: index holds {size} bytes, header says {expected} (truncated or corrupt)")
        try:
            bsize = bpath.stat().st_size
        except OSError as e:
            raise XLMError(f"{bpath}: cannot open token file: {e.strerror}") from None
        if bsize != t * self.dtype.itemsize:
            raise XLMError(
                f"{bpath}: holds {bsize} bytes, index says {t} tokens of {self.dtype.name} "
                f"({t * self.dtype.itemsize} bytes): truncated or from another corpus"
            )
        self.offsets = np.memmap(ipath, dtype="<i8", mode="r", offset=start, shape=(n + 1,))
        if self.offsets[0] != 0 or self.offsets[-1] != t:
            raise XLMError(
                f"{ipath}: offsets run from {self.offsets[0]} to {self.offsets[-1]}, "
                f"expected 0 to {t} (index points past the end of {bpath.name})"
            )
        self.tokens = np.memmap(bpath, dtype=self.dtype, mode="r", shape=(t,)) if t else np.zeros(0, self.dtype)
        self._sizes: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_tokens(self) -> int:
        """Tokens in the ``.bin`` file, one ``</s>`` per sentence included."""
        return len(self.tokens)

    @property
    def sizes(self) -> np.ndarray:
        """Sentence lengths without the trailing ``</s>`` (computed on first use)."""
        if self._sizes is None:
            self._sizes = np.diff(self.offsets) - 1
        return self._sizes

    def __getitem__(self, i: int) -> np.ndarray:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        return np.asarray(self.tokens[self.offsets[i] : self.offsets[i + 1] - 1])

    def validate(self) -> None:
        """Full O(n) check: offsets increase, every sentence ends in ``</s>``, ids fit the vocabulary."""
        where = idx_path(self.prefix)
        if len(self) and (np.diff(self.offsets) < 1).any():
            raise XLMError(f"{where}: offsets are not strictly increasing")
        if len(self) and (self.tokens[self.offsets[1:] - 1] != EOS_INDEX).any():
            raise XLMError(f"{bin_path(self.prefix)}: a sentence does not end with </s>")
        for s in range(0, len(self.tokens), _CHUNK * 16):
            if int(self.tokens[s : s + _CHUNK * 16].max(initial=0)) >= self.vocab_size:
                raise XLMError(f"{bin_path(self.prefix)}: token id outside the vocabulary of {self.vocab_size}")
