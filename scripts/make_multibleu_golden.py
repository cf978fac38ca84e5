"""Goldens of Moses' multi-bleu.perl on fixed cases: tests/golden/multi_bleu.json.

Runs the real script (scripts/generic/multi-bleu.perl of moses-smt/mosesdecoder, not vendored here:
pass its path) with perl on each case and stores the line it prints; tests/test_bleu.py checks that
:func:`xlm.bleu.multi_bleu` prints the same.

usage: python scripts/make_multibleu_golden.py /path/to/multi-bleu.perl
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "golden" / "multi_bleu.json"
HYP = ["the cat sat on the mat .", "a quick brown fox jumps over the lazy dog", "hello world",
       "il fait beau aujourd' hui", "the the the the the the the"]
REF = ["the cat sat on the mat .", "the quick brown fox jumped over the lazy dog .", "hello there world",
       "il fait très beau aujourd' hui", "the cat is on the mat"]
CASES = {
    "single_ref": {"hyp": HYP, "refs": [REF], "lc": False},
    "two_refs": {"hyp": HYP, "refs": [REF, ["there is a cat on the mat", "a fast brown fox jumps over a lazy dog",
                                             "hello world !", "il fait beau aujourd' hui", "there is a cat"]],
                 "lc": False},
    "short_hyp_brevity": {"hyp": ["the cat", "a fox", "hello"], "refs": [["the cat sat on the mat", "a quick fox ran",
                                                                          "hello world"]], "lc": False},
    "closest_length_tie_takes_shorter": {"hyp": ["a b c d e"], "refs": [["a b c d e f g"], ["a b c"]], "lc": False},
    "lowercase_ascii_only": {"hyp": ["The CAT sat ÉTÉ été", "Über Alles ."],
                             "refs": [["the cat sat été été", "über alles ."]], "lc": True},
    "case_sensitive": {"hyp": ["The CAT sat ÉTÉ été", "Über Alles ."],
                       "refs": [["the cat sat été été", "über alles ."]], "lc": False},
    "no_4gram_match": {"hyp": ["a b c d", "e f g h"], "refs": [["a b c x", "e f y h"]], "lc": False},
    "whitespace": {"hyp": ["  a\tb  c d\u00a0e  ", "x  y z w"], "refs": [["a b c d\u00a0e", "x y z w"]], "lc": False},
    "empty_hyp_line": {"hyp": ["", "one two three four five"], "refs": [["nothing here", "one two three four five"]],
                       "lc": False},
    "short_sentences": {"hyp": ["a", "b c"], "refs": [["a", "b c"]], "lc": False},
    "clipping": {"hyp": ["the the the the", "on on on"], "refs": [["the cat the mat", "on the mat"]], "lc": False},
}


def run(script: str, case: dict) -> str:
    with tempfile.TemporaryDirectory() as d:
        refs = []
        for i, lines in enumerate(case["refs"]):
            p = Path(d) / f"ref{i}"
            p.write_bytes("".join(line + "\n" for line in lines).encode("utf-8"))
            refs.append(str(p))
        hyp = "".join(line + "\n" for line in case["hyp"]).encode("utf-8")
        cmd = ["perl", script] + (["-lc"] if case["lc"] else []) + refs
        out = subprocess.run(cmd, input=hyp, capture_output=True, check=False)
        return out.stdout.decode("utf-8").strip()


def main() -> None:
    script = sys.argv[1]
    golden = {name: {**case, "output": run(script, case)} for name, case in CASES.items()}
    GOLDEN.write_text(json.dumps(golden, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    for name, case in golden.items():
        print(f"{name}: {case['output']}")


if __name__ == "__main__":
    main()
