#!/usr/bin/env python
"""``<unk>`` rate of raw text fed to a released-style original ``.pth``, with and without its codes.

    python scripts/released_unk_rate.py --model runs/tiny --codes data/processed/msgcorpus_slice/codes

The model (ours) is exported in the original format, which carries neither BPE codes nor whether
its text was lowercased, exactly as the released XLM checkpoints; the ``.pth`` is then loaded back
as a user would, and the share of ``<unk>`` pieces among the BPE pieces of the bundled test
sentences is printed per language for:

- ``codes + lowercase``: ``load_pretrained(pth, codes=..., lowercase=True)`` (the right way);
- ``codes only``: ``load_pretrained(pth, codes=...)``: lowercasing unknown, so not done (a warning says so);
- ``no codes``: whole Moses words (cased, then lowercased) looked up in the BPE vocabulary, what
  loading such a file fed the model before ``encode`` refused it (it now stops with an error naming
  ``codes=``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from xlm import load_pretrained, save_pretrained  # noqa: E402
from xlm.data.dictionary import UNK_INDEX  # noqa: E402
from xlm.errors import XLMError, XLMWarning  # noqa: E402
from xlm.text import DEFAULT_SETTINGS, TextPipeline, prepare  # noqa: E402


def unk_rate(pieces: list[list[str]], p) -> tuple[int, int]:
    ids = [i for sent in pieces for i in p.dictionary.encode(sent)]
    return sum(i == UNK_INDEX for i in ids), len(ids)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="our checkpoint or run folder (trained on lowercased text)")
    ap.add_argument("--codes", required=True, help="the BPE codes its text was segmented with")
    ap.add_argument("--langs", nargs="+", default=["en", "fr"])
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "msgcorpus" / "mono", help="folder of test.LANG")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pth = save_pretrained(load_pretrained(args.model), Path(tmp) / "released.pth", format="original")
        bare = load_pretrained(pth)
        try:
            bare.tokenize(["x"], args.langs[0])
            refused = "no error (!)"
        except XLMError as e:
            refused = f"error: {e}"
        print(f"{pth.name} without codes, raw text -> {refused}")
        print()
        print("| language | sentences | codes + lowercase | codes only | no codes | no codes + lowercase |")
        print("|---|---|---|---|---|---|")
        for lang in args.langs:
            lines = [x for x in (args.data / f"test.{lang}").read_text(encoding="utf-8").split("\n") if x]
            rates = []
            for codes, lowercase in ((args.codes, True), (args.codes, None), (None, None), (None, True)):
                p = load_pretrained(pth, codes=codes, lowercase=lowercase)
                if codes is None:  # the old behaviour, rebuilt explicitly: no BPE
                    pipe = TextPipeline({**DEFAULT_SETTINGS, "lower_remove_accent": bool(lowercase)}, None)
                    pieces = [pipe(s, lang) for s in lines]
                else:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", XLMWarning)
                        pieces, _ = prepare(p, lines, lang)
                unk, total = unk_rate(pieces, p)
                rates.append(f"{100 * unk / total:.2f}% ({unk}/{total})")
            print(f"| {lang} | {len(lines)} | " + " | ".join(rates) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
