"""Convert a ``.pth`` file binarized by the original XLM ``preprocess.py`` into ``.bin``/``.idx`` + vocab.

Those files are pickles of ``{'dico': Dictionary, 'positions': int64 (n, 2), 'sentences': uint16 or
int32, 'unk_words': {word: count}}``, saved with ``pickle_protocol=4``, which PyTorch's
``weights_only`` loader cannot parse. Unpickling them normally would run whatever code the file
names, so we use our own unpickler whose ``find_class`` knows only what such a file legitimately
needs: numpy's array/dtype reconstructors and the ``Dictionary`` class (as
``src.data.dictionary`` or ``xlm.data.dictionary``), which is replaced by a plain stand-in that
just holds attributes. Any other global (``os.system``, ``builtins.eval``, ...) is refused before it
is looked up, so nothing in the file is executed. Both of ``torch.save``'s formats are read: the
zip archive (PyTorch >= 1.6) and the legacy stream of pickles (what 2019-era XLM data used).
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xlm.data.binarize import check_vocab_slot, install_vocab
from xlm.data.dictionary import EOS_INDEX, N_SPECIAL, Dictionary
from xlm.data.indexed import IndexedWriter
from xlm.errors import XLMError

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_DICTIONARY_MODULES = ("src.data.dictionary", "xlm.data.dictionary")
_SENTENCES_PER_WRITE = 1 << 20


class PickledDictionary:
    """Stand-in for the original ``Dictionary``: receives its attributes, has no behaviour."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise pickle.UnpicklingError("Dictionary state is not a dict")
        self.__dict__.update({k: v for k, v in state.items() if k in ("id2word", "word2id", "counts")})


def _numpy_globals() -> dict[tuple[str, str], Any]:
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray  # type: ignore[no-redef]
    found: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        found[(module, "_reconstruct")] = multiarray._reconstruct
        found[(module, "scalar")] = multiarray.scalar
    return found


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only allow-listed globals; anything else is refused without being imported."""

    def __init__(self, file: io.BufferedIOBase, source: str):
        super().__init__(file)
        self.source = source
        self.allowed = _numpy_globals()
        self.allowed[("collections", "OrderedDict")] = OrderedDict
        for module in _DICTIONARY_MODULES:
            self.allowed[(module, "Dictionary")] = PickledDictionary

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise XLMError(
                f"{self.source}: refusing to load: the pickle references {module}.{name}, which an "
                "original XLM data file never contains (it could run code)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise XLMError(f"{self.source}: holds torch tensors; an original preprocess.py file holds numpy arrays only")


def _unpickle(data: bytes | io.BufferedIOBase, source: str) -> Any:
    stream = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        return _RestrictedUnpickler(stream, source).load()
    except XLMError:
        raise
    except Exception as e:  # corrupt or truncated pickles raise many different types
        raise XLMError(f"{source}: not a readable XLM data file ({type(e).__name__}: {e})") from None


def load_pickle_safely(path: str | os.PathLike) -> Any:
    """The object saved by ``torch.save`` in ``path``, unpickled with the allow-list above."""
    source = str(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                names = [n for n in z.namelist() if n.endswith("data.pkl")]
                if len(names) != 1:
                    raise XLMError(f"{source}: zip archive without a single data.pkl; not a torch.save file")
                return _unpickle(z.read(names[0]), source)
        with open(path, "rb") as f:
            magic = _unpickle(f, source)
            if magic != _LEGACY_MAGIC:
                raise XLMError(f"{source}: not a torch.save file (bad magic number)")
            if _unpickle(f, source) != _LEGACY_PROTOCOL:
                raise XLMError(f"{source}: unsupported legacy torch.save protocol")
            _unpickle(f, source)  # sys_info: byte order and type sizes
            return _unpickle(f, source)
    except OSError as e:
        raise XLMError(f"{source}: cannot read: {e.strerror}") from None
    except zipfile.BadZipFile as e:
        raise XLMError(f"{source}: corrupt zip archive ({e})") from None


@dataclass
class OriginalData:
    dico: Dictionary
    positions: np.ndarray
    sentences: np.ndarray
    unk_words: dict[str, int]


def load_original(path: str | os.PathLike) -> OriginalData:
    """Read and check an original ``.pth``: every sentence must end with ``</s>`` and fit the vocabulary."""
    source = str(path)
    obj = load_pickle_safely(path)
    if not isinstance(obj, dict) or not {"dico", "positions", "sentences"} <= set(obj):
        keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise XLMError(f"{source}: expected a dict with 'dico', 'positions', 'sentences', got {keys}")
    pickled = obj["dico"]
    if not isinstance(pickled, PickledDictionary) or not hasattr(pickled, "id2word"):
        raise XLMError(f"{source}: 'dico' is not an XLM Dictionary")
    try:
        dico = Dictionary.from_id2word(pickled.id2word, getattr(pickled, "counts", None))
    except (TypeError, AttributeError, ValueError) as e:
        raise XLMError(f"{source}: malformed dictionary ({e})") from None
    counts = dico.counts[N_SPECIAL:]
    if any(b > a for a, b in zip(counts, counts[1:])):
        raise XLMError(f"{source}: dictionary counts are not sorted by decreasing frequency; cannot write a vocab file")
    positions, sentences = obj["positions"], obj["sentences"]
    for name, arr in (("positions", positions), ("sentences", sentences)):
        if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "iu":
            raise XLMError(f"{source}: '{name}' is not an integer numpy array")
    if positions.ndim != 2 or positions.shape[1] != 2 or sentences.ndim != 1:
        raise XLMError(
            f"{source}: 'positions' must be (n, 2) and 'sentences' 1-D, got {positions.shape} and {sentences.shape}"
        )
    starts, ends = positions[:, 0].astype(np.int64), positions[:, 1].astype(np.int64)
    if len(positions) and (starts.min() < 0 or ends.max() >= len(sentences) or (ends < starts).any()):
        raise XLMError(f"{source}: 'positions' point outside 'sentences'")
    if len(positions) and (sentences[ends] != EOS_INDEX).any():
        raise XLMError(f"{source}: a sentence does not end with </s> (id {EOS_INDEX})")
    if len(sentences) and (int(sentences.min()) < 0 or int(sentences.max()) >= len(dico)):
        raise XLMError(f"{source}: token ids outside the dictionary of {len(dico)} words")
    unk = obj.get("unk_words") or {}
    return OriginalData(dico, positions, sentences, dict(unk) if isinstance(unk, dict) else {})


def convert_original(path: str | os.PathLike, output_prefix: str | os.PathLike) -> OriginalData:
    """Write ``OUTPUT_PREFIX.bin/.idx`` and ``dirname(OUTPUT_PREFIX)/vocab`` from an original ``.pth``."""
    data = load_original(path)
    folder = Path(output_prefix).parent
    check_vocab_slot(data.dico, folder, str(path))
    starts, ends = data.positions[:, 0].astype(np.int64), data.positions[:, 1].astype(np.int64)
    contiguous = len(starts) == 0 or (starts[0] == 0 and (starts[1:] == ends[:-1] + 1).all())
    with IndexedWriter(output_prefix, len(data.dico), data.dico.fingerprint()) as writer:
        if contiguous:  # the usual case: 'sentences' already is our .bin layout
            for lo in range(0, len(ends), _SENTENCES_PER_WRITE):
                hi = min(lo + _SENTENCES_PER_WRITE, len(ends))
                first = starts[lo]
                writer.add_flat(np.asarray(data.sentences[first : ends[hi - 1] + 1]), ends[lo:hi] + 1 - first)
        else:
            for s, e in zip(starts.tolist(), ends.tolist()):
                writer.add(np.asarray(data.sentences[s:e]))
        writer.meta = {
            "source": str(path),
            "converted_from": "original XLM preprocess.py .pth",
            "n_unk": int(sum(int(v) for v in data.unk_words.values())),
        }
    install_vocab(data.dico, folder, str(path))
    return data
