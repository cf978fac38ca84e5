#!/usr/bin/env python
"""Regenerate tests/golden/dictionary/read_vocab.json by running the original XLM's vocabulary reader.

tests/test_dictionary.py checks that ``xlm.data.dictionary.Dictionary.read_vocab`` gives, on every
case below, the ids (and counts) that the original's ``Dictionary.read_vocab`` gives, or fails
where the original fails. The original is imported from a checkout of facebookresearch/XLM (its
file ``xlm/data/dictionary.py``, which needs numpy and torch) and run; nothing of it is copied:

    git -C XLM_GIT_DIR archive HEAD xlm/data/dictionary.py | tar -x -C /tmp/origxlm
    python scripts/make_dictionary_golden.py --xlm-repo /tmp/origxlm

Each case is a vocabulary file's text (written as UTF-8 bytes, unchanged: ``\\r`` stays ``\\r``);
the golden holds the text, the original's words from id 14 on and their counts, or the name of the
exception it raised, and the same after its ``max_vocab``/``min_count`` where a case asks for them.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "dictionary" / "read_vocab.json"

# name -> (file text, [max_vocab values], [min_count values])
CASES: dict[str, tuple[str, list[int], list[int]]] = {
    "clean": ("the 10\nde@@ 7\nchat 3\n", [15, 16], [3, 5, 8]),
    "u2028_token": ("the 10\nli\u2028ne 8\nde@@ 7\nchat 3\n", [16], []),
    "u2028_line_with_bad_count": ("the 10\nli\u2028ne x\nchat 3\n", [], []),
    "nbsp_tab_and_other_whitespace_in_tokens": (
        "the 10\nnb\u00a0sp 9\ntab\there 8\nx\x85y 8\nfs\x1cz 7\nem\u2003sp 7\nnarrow\u202fnb 6\nzw\u200bsp 5\nok 4\n",
        [16],
        [],
    ),
    "wrong_number_of_fields": ("the 10\n\nthree fields 9 x\nsolo\n   \nde@@ 7\n", [], []),
    "duplicates_and_special_words": ("the 10\nde@@ 7\nthe 5\n<unk> 4\n<s> 3\n<special1> 3\nchat 2\n", [], []),
    "crlf": ("the 10\r\nde@@ 7\r\nchat 3\r\n", [], []),
    "lone_cr_inside_a_token": ("the 10\nchi\ren 5\nde@@ 4\n", [], []),
    "bom": ("\ufeffthe 10\nde@@ 7\n", [], []),
    "leading_and_trailing_whitespace": (" the 10  \nde@@ 7\t\n", [], []),
    "no_final_newline": ("the 10\nde@@ 7", [], []),
    "empty_file": ("", [], []),
    "last_count_larger": ("the 10\nde@@ 7\nchat 9\n", [], [8]),
    "count_increases_in_the_middle": ("the 10\nde@@ 11\nchat 3\n", [], []),
    "count_not_a_number": ("the 10\nde@@ x7\n", [], []),
    "count_with_sign": ("the +10\n", [], []),
    "duplicate_with_bad_count": ("the 10\nthe x\n", [], []),
    "arabic_indic_digits": ("the 10\nde@@ \u0661\u0662\n", [], []),
    "superscript_count": ("the 10\nde@@ \u00b2\n", [], []),
}


def load_original(repo: Path):
    path = repo / "xlm" / "data" / "dictionary.py"
    spec = importlib.util.spec_from_file_location("original_xlm_dictionary", path)
    if spec is None or spec.loader is None:
        sys.exit(f"error: {path}: not found (pass the root of an XLM checkout)")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Dictionary


def outcome(make) -> dict:
    try:
        d = make()
    except Exception as e:  # noqa: BLE001 - the original raises assertions, KeyErrors, ValueErrors
        return {"error": type(e).__name__}
    words = [d.id2word[i] for i in range(14, len(d))]
    return {"words": words, "counts": [d.counts[w] for w in words]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--xlm-repo", type=Path, required=True, help="root of a facebookresearch/XLM checkout")
    args = ap.parse_args()
    logging.disable(logging.CRITICAL)
    Dictionary = load_original(args.xlm_repo)
    golden = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (text, max_vocabs, min_counts) in CASES.items():
            path = Path(tmp) / name
            path.write_bytes(text.encode("utf-8"))

            def read(path=path):
                return Dictionary.read_vocab(str(path))

            entry = {"text": text, **outcome(read)}

            def limited(method, value, read=read):
                def make():
                    d = read()
                    getattr(d, method)(value)
                    return d
                return make

            entry["max_vocab"] = {str(n): outcome(limited("max_vocab", n)) for n in max_vocabs}
            entry["min_count"] = {str(n): outcome(limited("min_count", n)) for n in min_counts}
            golden[name] = entry
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps(golden, indent=1, ensure_ascii=True) + "\n", encoding="utf-8")
    print(f"wrote {len(golden)} cases to {GOLDEN}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
