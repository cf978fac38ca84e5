"""xlm.data.bpe against fastBPE: golden outputs fastBPE produced (tests/golden/bpe, made by
scripts/make_bpe_golden.py) and small independent reference implementations written here."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xlm.data.bpe import (
    BPE,
    apply_bpe_file,
    check_codes,
    count_words,
    get_vocab,
    learn_bpe,
    learn_codes,
    read_bpe_vocab,
    read_codes,
)
from xlm.data.bpe.fast import well_formed
from xlm.errors import XLMError

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "bpe"
SLICE = ROOT / "data" / "msgcorpus"
SHARED = ROOT.parent / "shared" / "data" / "msgcorpus"
CORPUS = SHARED if SHARED.is_dir() else SLICE  # the whole corpus where it exists, the bundled slice otherwise
CODES = GOLDEN / "codes.txt"
VOCAB = GOLDEN / "vocab.txt"


HAVE_TOKENIZERS = importlib.util.find_spec("tokenizers") is not None


@pytest.fixture(scope="module")
def plain() -> BPE:
    return BPE(CODES)


@pytest.fixture(scope="module")
def restricted() -> BPE:
    return BPE(CODES, VOCAB)


@pytest.fixture(scope="module", params=[True, False], ids=["accelerated", "pure"])
def both(request: pytest.FixtureRequest) -> tuple[BPE, BPE]:
    """(plain, restricted) with the tokenizers accelerator (where installed) and without it."""
    plain, restricted = BPE(CODES, accelerate=request.param), BPE(CODES, VOCAB, accelerate=request.param)
    assert plain.accelerated == restricted.accelerated == (request.param and HAVE_TOKENIZERS)
    return plain, restricted


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_same_lines(ours: bytes, gold: bytes, what: str) -> None:
    """Byte equality, reported as the first differing line so a failure says where and how."""
    if ours == gold:
        return
    a, b = ours.split(b"\n"), gold.split(b"\n")
    for i, (x, y) in enumerate(zip(a, b), 1):
        if x != y:
            pytest.fail(f"{what}: line {i} differs\n ours:     {x[:300]!r}\n fastBPE:  {y[:300]!r}")
    pytest.fail(f"{what}: {len(a)} lines, fastBPE wrote {len(b)}")


# -- independent references (straight from the description of fastBPE, no shared code) ----------


def ref_units(word: str) -> list[str]:
    """Units the way fastBPE's C loop makes them: UTF-8 lead bytes start units, NUL stops the scan."""
    data = word.encode("utf-8")
    units, start, pos = [], 0, 0
    while pos < len(data) and data[pos] != 0:
        if pos > 0 and data[pos] & 0xC0 != 0x80:
            units.append(data[start:pos])
            start = pos
        pos += 1
    units.append(data[start:] + b"</w>")
    return [u.decode("utf-8") for u in units]


def ref_merge_all(units: list, pair: tuple, merged) -> list:
    out, i = [], 0
    while i < len(units):
        if i + 1 < len(units) and (units[i], units[i + 1]) == pair:
            out.append(merged)
            i += 2
        else:
            out.append(units[i])
            i += 1
    return out


def ref_apply(word: str, codes: list[tuple[str, str, int]], vocab: dict[str, int] | None = None) -> list[str]:
    ranks = {(left, right): i for i, (left, right, _) in enumerate(codes)}
    units = ref_units(word)
    while len(units) > 1:
        found = [(ranks[p], i) for i, p in enumerate(zip(units, units[1:])) if p in ranks]
        if not found:
            break
        _, i = min(found)
        pair = (units[i], units[i + 1])
        units = ref_merge_all(units, pair, pair[0] + pair[1])
    if vocab:
        splits = {left + right: (left, right) for left, right, _ in codes}

        def query(s: str, final: bool) -> str:
            return s[:-4] if final else s + "@@"

        def decompose(s: str, final: bool) -> list[str]:
            if s not in splits:
                return [s]
            left, right = splits[s]
            out = [left] if query(left, False) in vocab else decompose(left, False)
            return out + ([right] if query(right, final) in vocab else decompose(right, final))

        last = len(units) - 1
        units = [
            p for i, u in enumerate(units) for p in ([u] if query(u, i == last) in vocab else decompose(u, i == last))
        ]
    return [u + "@@" for u in units[:-1]] + [units[-1][:-4]]


def ref_learn(word_counts: dict[str, int], n_codes: int) -> list[tuple[str, str, int]]:
    """Recount every pair from scratch at each step; best = highest count, then smallest id pair."""
    names: list[str] = []
    ids: dict[str, int] = {}
    words = []
    for word, count in word_counts.items():
        for unit in ref_units(word):
            if unit not in ids:
                ids[unit] = len(names)
                names.append(unit)
        words.append(([ids[u] for u in ref_units(word)], count))
    codes = []
    for _ in range(n_codes):
        counts: Counter = Counter()
        for units, count in words:
            for pair in zip(units, units[1:]):
                counts[pair] += count
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], p))
        codes.append((names[best[0]], names[best[1]], counts[best]))
        names.append(names[best[0]] + names[best[1]])
        words = [(ref_merge_all(units, best, len(names) - 1), count) for units, count in words]
    return codes


def ref_word_counts(text: str) -> dict[str, int]:
    return dict(Counter(w for w in text.replace("\n", " ").split(" ") if w))


# -- apply: goldens from fastBPE -----------------------------------------------------------------


@pytest.mark.parametrize("with_vocab", [False, True], ids=["plain", "vocab"])
def test_sample_lines_match_fastbpe(tmp_path: Path, both: tuple[BPE, BPE], with_vocab: bool) -> None:
    out = tmp_path / "sample.bpe"
    apply_bpe_file(both[with_vocab], GOLDEN / "sample.txt", out, progress=False)
    gold = GOLDEN / ("sample.vocab.bpe" if with_vocab else "sample.bpe")
    assert_same_lines(out.read_bytes(), gold.read_bytes(), "sample.txt")


def test_edge_cases_file_mode_match_fastbpe(tmp_path: Path, both: tuple[BPE, BPE]) -> None:
    """Empty lines, runs of spaces, tabs/NBSP/NUL/CR inside words, CJK, unseen chars, long lines."""
    out = tmp_path / "edge.bpe"
    apply_bpe_file(both[0], GOLDEN / "edge.txt", out, progress=False)
    assert_same_lines(out.read_bytes(), (GOLDEN / "edge.bpe").read_bytes(), "edge.txt")


def test_edge_cases_python_api_match_fastbpe_package(both: tuple[BPE, BPE]) -> None:
    plain, restricted = both
    golden = json.loads((GOLDEN / "edge.lines.json").read_text(encoding="utf-8"))
    assert plain.apply(golden["lines"]) == golden["plain"]
    assert restricted.apply(golden["lines"]) == golden["vocab"]
    assert "\0" in "".join(golden["lines"]) and "\t" in "".join(golden["lines"])  # the goldens cover them


def test_apply_word_pieces(plain: BPE) -> None:
    pieces = plain.apply_word("configuration")
    assert "".join(p.removesuffix("@@") for p in pieces) == "configuration"
    assert all(p.endswith("@@") for p in pieces[:-1]) and not pieces[-1].endswith("@@")
    assert plain.apply_word("") == []
    assert plain.apply_word("ʬ") == ["ʬ"]  # a character no code knows stays as it is
    assert plain.apply(["  a  b  ", ""]) == ["a b", ""]


@pytest.mark.parametrize("with_vocab", [False, True], ids=["plain", "vocab"])
def test_whole_corpus_matches_fastbpe(tmp_path: Path, plain: BPE, restricted: BPE, with_vocab: bool) -> None:
    """Every file of msgcorpus (../shared when present, else the bundled slice), every byte."""
    outputs = json.loads((GOLDEN / "outputs.json").read_text())
    files = sorted(p for p in CORPUS.glob("*/*") if p.is_file())
    assert len(files) >= 24
    for path in files:
        data = path.read_bytes()
        gold = outputs.get(sha256(data))
        assert gold, f"{path} changed since the goldens were made: run scripts/make_bpe_golden.py"
        out = tmp_path / "out"
        apply_bpe_file(restricted if with_vocab else plain, path, out, progress=False)
        assert sha256(out.read_bytes()) == gold["apply_vocab" if with_vocab else "apply"], path


def test_accelerator_gives_pure_python_units_on_every_corpus_word() -> None:
    """The file goldens above run accelerated where tokenizers is installed; this ties the pure
    path to them word by word (a file's output is a function of its words' outputs)."""
    words = count_words(sorted(p for p in CORPUS.glob("*/*") if p.is_file()), progress=False)
    fast, pure = BPE(CODES), BPE(CODES, accelerate=False)
    assert fast.accelerated == HAVE_TOKENIZERS
    for word in words:
        text = word.decode()
        assert fast.units(text) == pure.units(text), text


def test_accelerator_refuses_codes_it_would_apply_differently() -> None:
    """tokenizers merges by (rank, position): with a code whose side no earlier code makes, it
    would merge 'ab'+'a' before the second 'a b' of 'ababa'; fastBPE merges all 'a b' first."""
    codes = [("ab", "a", 1), ("a", "b", 1)]
    assert not well_formed(codes) and well_formed(codes[1:])
    bpe = BPE(codes)
    assert not bpe.accelerated
    assert bpe.apply_word("ababa") == ref_apply("ababa", codes) == ["ab@@", "ab@@", "a"]


def test_get_vocab_matches_fastbpe(tmp_path: Path) -> None:
    outputs = json.loads((GOLDEN / "outputs.json").read_text())
    for path in sorted(p for p in CORPUS.glob("*/*") if p.is_file()):
        out = tmp_path / "vocab"
        get_vocab([path], out, progress=False)
        assert sha256(out.read_bytes()) == outputs[sha256(path.read_bytes())]["getvocab"], path


def test_get_vocab_order_and_several_inputs(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes("b a é\n\nz  a\n".encode())
    (tmp_path / "b").write_bytes("b\tc é Z\n".encode())
    get_vocab([tmp_path / "a", tmp_path / "b"], tmp_path / "v", progress=False)
    # count desc, then bytes asc ('Z' < 'a' < 'b\tc' < 'z' < 'é'); a tab stays inside a word
    assert (tmp_path / "v").read_text() == "a 2\né 2\nZ 1\nb 1\nb\tc 1\nz 1\n"


# -- apply: behaviour fastBPE leaves implicit ----------------------------------------------------


def test_parallel_chunks_give_the_same_bytes(tmp_path: Path, restricted: BPE) -> None:
    src = GOLDEN / "edge.txt"
    one, many = tmp_path / "one", tmp_path / "many"
    apply_bpe_file(restricted, src, one, workers=1, progress=False)
    apply_bpe_file(BPE(CODES, VOCAB), src, many, workers=2, chunk_bytes=256, progress=False)
    assert one.read_bytes() == many.read_bytes()


def _apply_in_pool_worker(paths: tuple[str, str]) -> bytes:
    apply_bpe_file(CODES, paths[0], paths[1], workers=2, chunk_bytes=512, progress=False)
    return Path(paths[1]).read_bytes()


def test_apply_inside_a_pool_worker_runs_in_process(tmp_path: Path) -> None:
    """A daemonic pool worker may not start a pool of its own: apply must fall back, not fail."""
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(1) as pool:
        out = pool.apply(_apply_in_pool_worker, ((str(GOLDEN / "sample.txt"), str(tmp_path / "out")),))
    assert_same_lines(out, (GOLDEN / "sample.bpe").read_bytes(), "in a pool worker")


def test_workers_started_by_spawn_get_their_state_pickled(tmp_path: Path) -> None:
    """macOS, Windows and Python 3.14 do not fork: the worker state must survive pickling."""
    code = (
        "import multiprocessing, sys\n"
        "from xlm.data.bpe import BPE, apply_bpe_file\n"
        "if __name__ == '__main__':\n"
        "    multiprocessing.set_start_method('spawn')\n"
        "    apply_bpe_file(BPE(sys.argv[1], sys.argv[2]), sys.argv[3], sys.argv[4], workers=2, chunk_bytes=4096)\n"
    )
    script = tmp_path / "spawn.py"
    script.write_text(code)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, script, CODES, VOCAB, GOLDEN / "sample.txt", out], env=env, check=True)
    assert_same_lines(out.read_bytes(), (GOLDEN / "sample.vocab.bpe").read_bytes(), "spawned workers")


def test_last_word_without_newline_is_kept(tmp_path: Path, plain: BPE) -> None:
    """fastBPE silently drops it; we keep it (documented deviation)."""
    text = "first line\nno newline at the end of filename"
    (tmp_path / "with").write_text(text + "\n")
    (tmp_path / "without").write_text(text)
    apply_bpe_file(plain, tmp_path / "with", tmp_path / "with.bpe", progress=False)
    apply_bpe_file(plain, tmp_path / "without", tmp_path / "without.bpe", progress=False)
    expected = (tmp_path / "with.bpe").read_bytes()
    assert expected.endswith(b"\n") and (tmp_path / "without.bpe").read_bytes() == expected[:-1]
    assert expected.split(b"\n")[1].endswith(plain.encode_word("filename").encode())


def test_stdin_to_stdout_in_a_real_process() -> None:
    code = "import sys; from xlm.data.bpe import apply_bpe_file; apply_bpe_file(sys.argv[1], '-', '-')"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", code, str(CODES)],
        input=(GOLDEN / "sample.txt").read_bytes(),
        capture_output=True,
        env=env,
        check=True,
    )
    assert_same_lines(proc.stdout, (GOLDEN / "sample.bpe").read_bytes(), "stdin")
    assert proc.stderr == b""  # no progress bar when stderr is not a terminal


def test_invalid_utf8_names_file_and_line(tmp_path: Path, plain: BPE) -> None:
    src = tmp_path / "bad.txt"
    src.write_bytes(b"good line\n" * 40 + b"caf\xe9 latin-1\nmore\n")
    out = tmp_path / "out"
    out.write_text("previous")
    where = re.escape(f"{src}:41: ")
    with pytest.raises(XLMError, match=rf"^{where}invalid UTF-8 \(byte 0xe9 at byte 4 of the line\)"):
        apply_bpe_file(plain, src, out, workers=2, chunk_bytes=64, progress=False)
    assert out.read_text() == "previous"  # the output is replaced only on success
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.txt", "out"]
    with pytest.raises(XLMError, match=rf"^{where}"):
        get_vocab([src], tmp_path / "v", progress=False)
    with pytest.raises(XLMError, match=rf"^{where}"):
        learn_bpe([src], 10, tmp_path / "c", progress=False)


def test_invalid_utf8_replace_policy(tmp_path: Path, plain: BPE) -> None:
    src = tmp_path / "bad.txt"
    src.write_bytes(b"caf\xe9 ok\n")
    apply_bpe_file(plain, src, tmp_path / "out", errors="replace", progress=False)
    assert (tmp_path / "out").read_text() == plain.apply(["caf\ufffd ok"])[0] + "\n"
    with pytest.raises(XLMError, match="errors"):
        apply_bpe_file(plain, src, tmp_path / "out", errors="ignore", progress=False)


# -- codes and vocabulary files ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        (b"a b 3\nc d\n", 2, "expected 'LEFT RIGHT COUNT'"),
        (b"a b 3\nc d 1 2\n", 2, "expected 'LEFT RIGHT COUNT'"),
        (b"a  b 3\n", 1, "expected 'LEFT RIGHT COUNT'"),
        (b"a b x3\n", 1, "is not an integer"),
        (b"a b 3\nc d 2\na b 1\n", 3, "duplicate merge 'a' 'b'.*line 1"),
        (b"a bc 3\nab c 2\n", 2, "repeats the concatenation 'abc'.*line 1"),
        (b"a b 3\n\xff b 2\n", 2, "invalid UTF-8"),
        (b"a b 3\r\n", 1, "CRLF"),
    ],
)
def test_bad_codes_file(tmp_path: Path, content: bytes, line: int, message: str) -> None:
    path = tmp_path / "codes"
    path.write_bytes(content)
    with pytest.raises(XLMError, match=rf"^{re.escape(str(path))}:{line}: .*{message}"):
        read_codes(path)
    with pytest.raises(XLMError, match=rf"^{re.escape(str(path))}:{line}: "):
        BPE(path)


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        (b"a@@ 3\nb\n", 2, "expected 'TOKEN COUNT'"),
        (b"a@@ 3\nb 1 2\n", 2, "expected 'TOKEN COUNT'"),
        (b"a@@ three\n", 1, "is not an integer"),
        (b"a@@ 3\nb 2\na@@ 1\n", 3, "duplicate token 'a@@'.*line 1"),
    ],
)
def test_bad_vocab_file(tmp_path: Path, content: bytes, line: int, message: str) -> None:
    path = tmp_path / "vocab"
    path.write_bytes(content)
    with pytest.raises(XLMError, match=rf"^{re.escape(str(path))}:{line}: .*{message}"):
        read_bpe_vocab(path)
    with pytest.raises(XLMError, match=rf"^{re.escape(str(path))}:{line}: "):
        BPE(CODES, path)


def test_codes_roundtrip_and_in_memory_codes() -> None:
    codes = read_codes(CODES)
    assert len(codes) == 2000 and codes[0] == ("t", "i", 22487)
    assert BPE(codes).apply_word("configuration") == BPE(CODES).apply_word("configuration")
    assert read_bpe_vocab(VOCAB)["the"] > 0
    with pytest.raises(XLMError, match=r"codes\[1\]: duplicate merge"):
        check_codes([("a", "b", 1), ("a", "b", 1)])


def test_missing_input_is_an_xlm_error(tmp_path: Path) -> None:
    with pytest.raises(XLMError, match="(?i)no such file"):
        apply_bpe_file(CODES, tmp_path / "nope", tmp_path / "out", progress=False)
    with pytest.raises(XLMError, match="cannot read codes"):
        read_codes(tmp_path / "nope")


# -- learn ---------------------------------------------------------------------------------------


def _slice_train(tmp_path: Path) -> Path:
    train = tmp_path / "train.txt"
    train.write_bytes(b"".join(p.read_bytes() for p in sorted(SLICE.glob("*/train.*"))))
    expected = (GOLDEN / "train.sha256").read_text().strip()
    assert sha256(train.read_bytes()) == expected, "slice changed: run scripts/make_bpe_golden.py"
    return train


def test_learn_follows_fastbpe_until_a_tie(tmp_path: Path) -> None:
    train = _slice_train(tmp_path)
    learn_bpe([train], 2000, tmp_path / "codes", progress=False)
    ours, gold = read_codes(tmp_path / "codes"), read_codes(CODES)  # read_codes enforces fastBPE's asserts
    assert len(ours) == len(gold) == 2000
    k = next(i for i, (x, y) in enumerate(zip(ours, gold)) if x != y)
    # Up to k both made the same merges, so both saw the same counts: k can only be a tie...
    assert ours[k][2] == gold[k][2]
    words = {w.decode(): c for w, c in count_words([train], progress=False).items()}
    assert true_count(words, ours[:k], gold[k][:2]) == ours[k][2]
    # ... and later ties only reorder or swap a few merges: the counts still run the same way.
    assert [c for *_, c in ours] == sorted((c for *_, c in ours), reverse=True)
    assert len(set(ours) & set(gold)) >= 0.99 * len(gold)


def true_count(words: dict[str, int], merges: list[tuple[str, str, int]], pair: tuple[str, str]) -> int:
    """Weighted occurrences of ``pair`` once ``merges`` were made in order, each everywhere."""
    total = 0
    for word, count in words.items():
        if pair[0] + pair[1] not in word + "</w>":
            continue  # cannot hold the pair
        units = ref_units(word)
        for left, right, _ in merges:
            units = ref_merge_all(units, (left, right), left + right)
        total += count * list(zip(units, units[1:])).count(pair)
    return total


def test_learn_matches_reference_on_real_text() -> None:
    files = sorted(SLICE.glob("mono/train.*"))
    text = b"".join(line for p in files for line in p.read_bytes().splitlines(keepends=True)[:80])
    words = ref_word_counts(text.decode())
    ours = learn_codes(words, 100)
    assert ours == ref_learn(words, 100)
    # every count is the true weighted pair frequency at the time of its merge
    for k in (0, 37, 99):
        assert ours[k][2] == true_count(words, ours[:k], ours[k][:2])


def test_learn_stops_when_no_pair_is_left(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "t").write_text("ab ab\nab\n")
    with caplog.at_level(logging.WARNING):
        learn_bpe([tmp_path / "t"], 10, tmp_path / "c", progress=False)
    assert (tmp_path / "c").read_text() == "a b</w> 3\n"
    assert "no pair left" in caplog.text


def test_learned_codes_apply_like_fastbpe_semantics(tmp_path: Path) -> None:
    """Learning then applying to the training words gives what replaying the merges gives."""
    src = tmp_path / "t"
    src.write_text("low lower lowest newer wider new\nnewest low low\n")
    learn_bpe([src], 30, tmp_path / "c", progress=False, workers=2, chunk_bytes=16)
    codes = read_codes(tmp_path / "c")
    bpe = BPE(codes)
    for word in ("low", "lowest", "newer", "wider", "lowly"):
        assert bpe.apply_word(word) == ref_apply(word, codes)


@pytest.mark.skipif(not importlib.util.find_spec("fastBPE"), reason="extra check: fastBPE package not installed")
def test_fastbpe_package_applies_our_codes(tmp_path: Path) -> None:
    import fastBPE

    train = _slice_train(tmp_path)
    learn_bpe([train], 500, tmp_path / "codes", progress=False)
    lines = (GOLDEN / "sample.txt").read_text().splitlines() + json.loads((GOLDEN / "edge.lines.json").read_text())[
        "lines"
    ]
    assert fastBPE.fastBPE(str(tmp_path / "codes")).apply(lines) == BPE(tmp_path / "codes").apply(lines)


# -- properties ----------------------------------------------------------------------------------

_WORD = st.text(alphabet="abcé中\0\t", min_size=1, max_size=9)
_LINE = st.lists(_WORD, min_size=1, max_size=12).map(" ".join)


@settings(max_examples=60, deadline=None)
@given(lines=st.lists(_LINE, min_size=1, max_size=8), n_codes=st.integers(0, 25), data=st.data())
def test_learn_and_apply_match_references(lines: list[str], n_codes: int, data: st.DataObject) -> None:
    words = ref_word_counts("\n".join(lines))
    codes = learn_codes(words, n_codes)
    assert codes == ref_learn(words, n_codes)
    check_codes(codes)  # what fastBPE's readCodes asserts
    pieces = sorted({p for w in words for p in ref_apply(w, codes)})
    vocab = {p: 1 for p in data.draw(st.lists(st.sampled_from(pieces), unique=True))} if pieces else {}
    for accelerate in (True, False):
        plain, restricted = BPE(codes, accelerate=accelerate), BPE(codes, vocab, accelerate=accelerate)
        for word in [*words, "cab", "中中中", "\0a", "ʬa"]:
            assert plain.apply_word(word) == ref_apply(word, codes), word
            assert restricted.apply_word(word) == ref_apply(word, codes, vocab), word


@settings(max_examples=40, deadline=None)
@given(text=st.text(alphabet="ab \n\t中\0", max_size=60))
def test_file_mode_keeps_every_delimiter(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    tmp = tmp_path_factory.mktemp("prop")
    codes = learn_codes(ref_word_counts(text + "\nab a中 ba"), 6)
    (tmp / "in").write_text(text, encoding="utf-8")
    apply_bpe_file(codes, tmp / "in", tmp / "out", progress=False)
    bpe = BPE(codes)
    expected = "\n".join(" ".join(bpe.encode_word(w) for w in line.split(" ")) for line in text.split("\n"))
    assert (tmp / "out").read_text(encoding="utf-8") == expected
