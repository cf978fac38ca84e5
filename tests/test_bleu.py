"""BLEU: tokenized BLEU equal to Moses' multi-bleu.perl (its printed lines kept as goldens, made by
scripts/make_multibleu_golden.py; rerun live when perl and the script are at hand), and sacrebleu as
the library and its own command line compute it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from xlm.bleu import multi_bleu, sacre_bleu
from xlm.errors import XLMError

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = json.loads((ROOT / "tests" / "golden" / "multi_bleu.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_multi_bleu_equals_the_perl_script(name):
    case = GOLDEN[name]
    assert str(multi_bleu(case["hyp"], case["refs"], lowercase=case["lc"])) == case["output"]


def test_multi_bleu_live_perl(tmp_path):
    script = os.environ.get("MULTI_BLEU_PERL")
    if not script or not shutil.which("perl"):
        pytest.skip("MULTI_BLEU_PERL (path of multi-bleu.perl) not set")
    sys.path.insert(0, str(ROOT / "scripts"))
    from make_multibleu_golden import run

    for case in GOLDEN.values():
        assert run(script, case) == case["output"]


def test_multi_bleu_refuses_misaligned_and_empty():
    with pytest.raises(XLMError, match="reference set 0: 1 lines but 2"):
        multi_bleu(["a", "b"], [["a"]])
    with pytest.raises(XLMError, match="every hypothesis is empty"):
        multi_bleu(["", ""], [["a b", "c"]])


def test_sacrebleu_library_and_its_command_line(tmp_path):
    hyp = ["The cat sat on the mat.", "A quick brown fox jumps over the lazy dog!", "Hello, world."]
    ref = ["The cat sat on the mat.", "The quick brown fox jumped over the lazy dog.", "Hello there, world."]
    (tmp_path / "hyp").write_text("\n".join(hyp) + "\n", encoding="utf-8")
    (tmp_path / "ref").write_text("\n".join(ref) + "\n", encoding="utf-8")
    ours = sacre_bleu(hyp, [ref])
    cli = subprocess.run([sys.executable, "-m", "sacrebleu", str(tmp_path / "ref"), "-i", str(tmp_path / "hyp"),
                          "-b"], capture_output=True, text=True, check=True)
    assert abs(ours - float(cli.stdout.strip())) < 0.01
    assert 0 < ours < 100
    assert sacre_bleu([h.lower() for h in hyp], [ref], lowercase=True) == pytest.approx(ours, abs=1e-9)
    # our command line
    out = subprocess.run([sys.executable, "-m", "xlm.evaluate", "bleu", "--hyp", str(tmp_path / "hyp"), "--ref",
                          str(tmp_path / "ref"), "--json"], capture_output=True, text=True, check=True, cwd=ROOT)
    assert json.loads(out.stdout)["bleu"] == pytest.approx(ours)
    case = GOLDEN["two_refs"]
    for i, lines in enumerate([case["hyp"]] + case["refs"]):
        (tmp_path / f"f{i}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "xlm.evaluate", "bleu", "--tokenized", "--hyp", str(tmp_path / "f0"),
                          "--ref", str(tmp_path / "f1"), str(tmp_path / "f2")], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.strip() == case["output"]
