#!/usr/bin/env python
"""Regenerate xlm/data/text/moses_tables.json: the facts the exact Moses tokenizer needs as data.

    python scripts/make_moses_tables.py --moses /tmp/moses187     # a mosesdecoder tree at 187a75cb5

where the tree comes from ``git -C mosesdecoder archive 187a75cb5 scripts/share/nonbreaking_prefixes
| tar -x -C /tmp/moses187``. Two kinds of facts, nothing else:

* ``classes``: the code points that perl (the one on PATH; 5.36.0 with Unicode 14.0 when made)
  puts in each character class the Moses scripts use, on character (utf8) strings: ``\\s``,
  ``\\p{IsAlnum}``, ``\\p{IsAlpha}``, ``\\p{IsN}``, ``\\p{IsLower}``, ``\\p{Ll}``, ``\\p{C}``.
  Python's ``unicodedata`` has no Alphabetic/Lowercase properties and ``str.isspace`` differs
  from perl's ``\\s``, so the classes are taken from perl itself, as ranges.
* ``nonbreaking_prefixes``: for each ``nonbreaking_prefix.LANG`` file, the table
  ``tokenizer.perl``'s ``load_prefixes`` builds from it (prefix -> 1, or 2 for ``#NUMERIC_ONLY#``),
  with the file read by the same rules: comment lines and lines that are empty or ``0`` are
  skipped, a later line wins, ``(.*)\\s+#NUMERIC_ONLY#`` keeps what is before the last marker.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "xlm" / "data" / "text" / "moses_tables.json"
COMMIT = "187a75cb5596c8e4362c66c62de395e2b7d3a64a"
CLASSES = {
    "space": r"\s",
    "alnum": r"\p{IsAlnum}",
    "alpha": r"\p{IsAlpha}",
    "number": r"\p{IsN}",
    "lower": r"\p{IsLower}",
    "ll": r"\p{Ll}",
    "other": r"\p{C}",
}

# Prints "lo hi" ranges of the code points (surrogates excluded: UTF-8 text never holds them)
# matching the class given as the first argument, tested on a utf8-upgraded one-character string.
PERL_DUMP = r"""
use strict; use warnings; no warnings 'utf8';
my $re = qr/\A$ARGV[0]\z/;
my ($lo, $prev) = (-1, -2);
for my $cp (0 .. 0x10FFFF) {
    next if $cp >= 0xD800 && $cp <= 0xDFFF;
    my $c = chr($cp); utf8::upgrade($c);
    if ($c =~ $re) {
        if ($cp != $prev + 1) { print "$lo $prev\n" if $lo >= 0; $lo = $cp; }
        $prev = $cp;
    }
}
print "$lo $prev\n" if $lo >= 0;
"""


def perl_class(pattern: str) -> list[list[int]]:
    out = subprocess.run(["perl", "-e", PERL_DUMP, pattern], check=True, capture_output=True, text=True).stdout
    return [[int(a), int(b)] for a, b in (line.split() for line in out.splitlines())]


def perl_facts() -> dict[str, str]:
    script = 'use Unicode::UCD; printf "%vd %s\\n", $^V, Unicode::UCD::UnicodeVersion();'
    perl, unicode = subprocess.run(["perl", "-e", script], check=True, capture_output=True, text=True).stdout.split()
    return {"perl": perl, "unicode": unicode}


_NUMERIC = re.compile(r"(.*)\s+#NUMERIC_ONLY#")


def read_prefixes(path: Path) -> dict[str, int]:
    table: dict[str, int] = {}
    for item in path.read_text(encoding="utf-8").split("\n"):
        if item in ("", "0") or item.startswith("#"):  # perl: `($item) && substr($item,0,1) ne "#"`
            continue
        m = _NUMERIC.match(item)
        if m:
            table[m.group(1)] = 2
        else:
            table[item] = 1
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moses", required=True, help="mosesdecoder tree at 187a75cb5 (scripts/share/...)")
    args = ap.parse_args()
    folder = Path(args.moses) / "scripts" / "share" / "nonbreaking_prefixes"
    prefixes = {
        p.name.rsplit(".", 1)[1]: read_prefixes(p) for p in sorted(folder.glob("nonbreaking_prefix.*"))
    }
    tables = {
        "source": f"moses-smt/mosesdecoder {COMMIT}: scripts/share/nonbreaking_prefixes/*; "
        "character classes of the perl below (scripts/make_moses_tables.py)",
        **perl_facts(),
        "classes": {name: perl_class(pattern) for name, pattern in CLASSES.items()},
        "nonbreaking_prefixes": prefixes,
    }
    OUT.write_text(json.dumps(tables, ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n", "utf-8")
    print(f"wrote {OUT}: {len(prefixes)} languages, classes {', '.join(CLASSES)}")


if __name__ == "__main__":
    main()
