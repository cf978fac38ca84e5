#!/usr/bin/env python
"""Regenerate tests/golden/whitespace/ from fastBPE and from the original XLM ``preprocess.py``.

The text holds every kind of whitespace that fastBPE keeps inside words but Python's ``str.split``
(the original's binarize) splits on; tests/test_whitespace.py runs our commands on it and compares.

    python scripts/make_whitespace_golden.py --fast /path/to/fast --xlm /path/to/facebookresearch/XLM

(`fast`: `pip download fastbpe --no-deps --no-binary :all:`, then
`g++ -std=c++11 -pthread -O3 fastBPE/main.cc -IfastBPE -o fast`; the XLM checkout: any clone or
`git archive` of facebookresearch/XLM; torch must be importable.)

What is written:
  text.txt        the lines below (written here)
  codes           `fast learnbpe N_CODES text.txt`
  text.bpe        `fast applybpe text.bpe text.txt codes`
  vocab           `fast getvocab text.bpe` (it holds words with CR, TAB, NBSP... inside)
  clean.vocab     vocab without the lines whose word holds such a character (filtered here): a
                  vocabulary that the original and our dictionary readers read alike
  original.json   the original's `python preprocess.py clean.vocab text.bpe`, run in the XLM
                  checkout: `sentences`, `positions` and `unk_words` of the .pth it writes
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "whitespace"
N_CODES = 40
PYTHON_ONLY = set("\t\x0b\x0c\r\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | {
    chr(c) for c in range(0x2000, 0x200B)
}

# Each kind at a known count, inside words, between them, at line ends and alone; plain lines
# with distinct word frequencies around them give learnbpe merges without ties.
LINES = [
    "le chien noir dort sous la table",
    "le chat blanc\r",  # CR before LF: a CRLF line end
    "un\rdeux trois",  # lone CR
    "le\tchien noir\t",  # TAB x2
    "tab\t\tdouble",  # TAB x2
    "vt\x0bff\x0c fin",  # VT, FF
    "fs\x1cgs\x1drs\x1eus\x1f",  # FS, GS, RS, US
    "nel\x85 le chien",  # NEL
    "le\xa0chien a\xa0b \xa0",  # NBSP x3
    "ligne\u2028suite\u2029fin",  # LS, PS
    "ogham\u1680en\u2002em\u2003fine\u2009nn\u202fmm\u205fide\u3000o",  # other spaces x7
    "\u3000",
    "",
    "chien chien chien noir noir table",
    "le chien dort le chat dort la table noire",
    "dormir sous la table",
]


def run(*args: str | Path, cwd: Path | None = None) -> bytes:
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, cwd=cwd).stdout


ORIGINAL = """
import json, sys, torch
from xlm.data.dictionary import Dictionary  # the original's, from the checkout (cwd)
data = torch.load(sys.argv[1], weights_only=False)
print(json.dumps({"sentences": data["sentences"].tolist(), "positions": data["positions"].tolist(),
                  "unk_words": data["unk_words"]}, ensure_ascii=False))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", required=True, help="the compiled fastBPE `fast` CLI")
    parser.add_argument("--xlm", required=True, help="a checkout of facebookresearch/XLM")
    args = parser.parse_args()
    fast, xlm = Path(args.fast).resolve(), Path(args.xlm).resolve()
    GOLDEN.mkdir(parents=True, exist_ok=True)
    text = GOLDEN / "text.txt"
    text.write_bytes("".join(line + "\n" for line in LINES).encode("utf-8"))
    (GOLDEN / "codes").write_bytes(run(fast, "learnbpe", N_CODES, text))
    bpe = GOLDEN / "text.bpe"
    run(fast, "applybpe", bpe, text, GOLDEN / "codes")
    vocab = run(fast, "getvocab", bpe)
    (GOLDEN / "vocab").write_bytes(vocab)
    clean = [line for line in vocab.split(b"\n")[:-1] if not PYTHON_ONLY & set(line.rpartition(b" ")[0].decode())]
    (GOLDEN / "clean.vocab").write_bytes(b"".join(line + b"\n" for line in clean))
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(bpe, Path(tmp) / "text.bpe")
        # the checkout's own `xlm` package must win: run in the checkout, without PYTHONPATH
        cmd = ["env", "-u", "PYTHONPATH", sys.executable]
        run(*cmd, "preprocess.py", GOLDEN / "clean.vocab", Path(tmp) / "text.bpe", cwd=xlm)
        out = run(*cmd, "-c", ORIGINAL, Path(tmp) / "text.bpe.pth", cwd=xlm)
    (GOLDEN / "original.json").write_text(json.dumps(json.loads(out), ensure_ascii=False, indent=0) + "\n")
    print(f"wrote {GOLDEN}", file=sys.stderr)


if __name__ == "__main__":
    main()
