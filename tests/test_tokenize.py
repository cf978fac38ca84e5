"""Tokenization: byte-exact against the Moses perl scripts (goldens made by perl), word segmenters,
settings that rebuild the tokenizer, files in parallel."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

from xlm.data.text.tables import prefix_languages
from xlm.data.tokenize import (
    Tokenizer,
    lowercase_and_remove_accent,
    remove_non_printing,
    replace_unicode_punctuation,
    tokenize_file,
)
from xlm.errors import XLMError

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "moses"
GOLDEN_LANGS = sorted({p.name.split(".")[0] for p in GOLDEN.glob("*.tok")})
INPUT = (GOLDEN / "input.txt").read_bytes().decode("utf-8")


def golden(lang: str, lower: bool) -> str:
    return (GOLDEN / f"{lang}{'.lower' if lower else ''}.tok").read_bytes().decode("utf-8")


def single_spaced(perl_output: str) -> str:
    """Perl's tokens, one space between them: what we write by default."""
    return "".join(" ".join(line.split()) + "\n" for line in perl_output.split("\n")[:-1])


def test_goldens_cover_every_prefix_language_and_fallbacks():
    assert set(prefix_languages()) < set(GOLDEN_LANGS)  # 25 languages with prefixes at 187a75cb5
    assert {"so", "cz", "th", "ar"} <= set(GOLDEN_LANGS)  # special rules, English fallback


@pytest.mark.parametrize("lang", GOLDEN_LANGS)
def test_byte_identical_to_the_perl_pipeline(lang):
    for lower in (False, True):
        tok = Tokenizer(lang, lower_remove_accent=lower, segmenter="moses", moses_whitespace=True)
        assert tok.tokenize_block(INPUT) == golden(lang, lower), (lang, lower)


@pytest.mark.parametrize("lang", ["en", "fr", "fi", "de", "el", "so", "zh"])
def test_default_output_is_perls_tokens_single_spaced(lang):
    for lower in (False, True):
        out = Tokenizer(lang, lower_remove_accent=lower, segmenter="moses").tokenize_block(INPUT)
        assert out == single_spaced(golden(lang, lower))
        lines = out.split("\n")
        assert lines[-1] == "" and len(lines) == INPUT.count("\n") + 1
        assert all("  " not in line and line == line.strip(" ") for line in lines)
        assert out != golden(lang, lower)  # perl's stray spaces ("' '", "end . ' ", "cafe  nai") are there


def test_line_by_line_equals_block():
    for lang in ("en", "fr"):
        tok = Tokenizer(lang, segmenter="moses", moses_whitespace=True)
        assert "".join(tok(line) + "\n" for line in INPUT.split("\n")[:-1]) == golden(lang, False)


def test_rules_where_sacremoses_differed_from_perl():  # expected strings: the perl pipeline's output
    en, fr, de = Tokenizer("en"), Tokenizer("fr"), Tokenizer("de")
    assert en("Set ssl = on in postgresql.conf.") == "Set ssl = on in postgresql.conf ."
    assert de("Falscher Befehl »%s...«") == 'Falscher Befehl " % s " ...'
    assert fr('Il a dit "oui", puis "non".') == 'Il a dit " oui " , puis " non " .'
    assert en("Call １２３") == 'Call " 23'  # replace-unicode-punctuation maps the full-width one to "
    assert en("soft\u00adhyphen zw\u200cnj") == "soft hyphen zw nj"  # every \p{C} becomes a space


def test_normalization_helpers_follow_the_scripts():
    assert replace_unicode_punctuation("你好，世界。  再见！（１０％）\n") == '你好,世界. 再见!("0%)\n'
    assert remove_non_printing("a\tb\x07c\u00add\ufeffe\n") == "a b c d e\n"
    assert lowercase_and_remove_accent("Élève DÉJÀ Ça Straße  \n") == "eleve deja ca straße\n"


def test_drop_invisible_keeps_words_whole():
    assert Tokenizer("en", drop_invisible=True)("in\u00adformation zw\u200cnj \ufeffbom") == "information zwnj bom"


def test_nfd_and_nfc_differ_unless_nfc_is_asked():
    nfc_text, nfd_text = "café naïve", unicodedata.normalize("NFD", "café naïve")
    assert Tokenizer("fr")(nfc_text) != Tokenizer("fr")(nfd_text)  # as the original: combining marks split off
    assert Tokenizer("fr", nfc=True)(nfd_text) == Tokenizer("fr")(nfc_text) == "café naïve"
    assert Tokenizer("fr", nfc=True).settings()["nfc"] is True


def test_bad_language_code_and_bad_segmenter_are_errors():
    with pytest.raises(XLMError, match="--lang"):
        Tokenizer("english!")
    with pytest.raises(XLMError, match="unknown segmenter 'kytea'"):
        Tokenizer("ja", segmenter="kytea")
    with pytest.raises(XLMError, match="choose one"):
        Tokenizer("zh", pre_segmented=True, segmenter="jieba")


def test_cjk_chars_and_pre_segmented_are_explicit_choices():
    assert Tokenizer("zh", segmenter="cjk-chars")("我有3个apple（苹果）！") == "我 有 3 个 apple ( 苹 果 ) !"
    assert Tokenizer("zh", pre_segmented=True)("我 有  苹果，好吗？") == "我 有 苹果,好吗?"
    assert Tokenizer("zh", segmenter="moses")("我有3个apple（苹果）！") == "我有3个apple ( 苹果 ) !"


@pytest.mark.parametrize(("lang", "module", "extra"), [("th", "pythainlp", "th"), ("zh", "jieba", "zh"),
                                                       ("ja", "fugashi", "ja")])  # fmt: skip
def test_missing_segmenter_stops_with_one_line_naming_the_extra(tmp_path, lang, module, extra):
    # the library made unimportable in a fresh process, as on a machine without the extra
    code = f"import sys; sys.modules[{module!r}] = None; from xlm.cli.preprocess import main; main(sys.argv[1:])"
    (tmp_path / "out").write_text("old\n")
    proc = subprocess.run([sys.executable, "-c", code, "tokenize", "--lang", lang, "-", str(tmp_path / "out")],
                          input="x\n", capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 1
    message = proc.stderr.strip()
    assert "\n" not in message and f"'.[{extra}]'" in message and "--pre-segmented" in message
    assert (tmp_path / "out").read_text() == "old\n"
    proc = subprocess.run([sys.executable, "-c", code, "tokenize", "--lang", lang, "--pre-segmented", "-", "-"],
                          input="a  b\n", capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 0 and proc.stdout == "a b\n"


@pytest.mark.skipif(importlib.util.find_spec("pythainlp") is None, reason="the th extra (pythainlp)")
def test_thai_is_segmented_by_pythainlp_and_keeps_tone_marks():
    tok = Tokenizer("th")
    assert tok.segmenter == "pythainlp" and tok.library_version.startswith("pythainlp ")
    out = tok("ชื่อของฉันคือสมชาย  ฉันชอบกิน")
    assert out.split(" ")[:3] == ["ชื่อ", "ของ", "ฉัน"] and "  " not in out  # not "ชื ่ อ" as Moses would


@pytest.mark.skipif(importlib.util.find_spec("jieba") is None, reason="the zh extra (jieba)")
def test_chinese_is_segmented_by_jieba_then_normalized():
    tok = Tokenizer("zh", lower_remove_accent=True)
    assert tok.segmenter == "jieba"
    assert tok("我喜欢苹果，Apple！") == "我 喜欢 苹果 , apple !"


@pytest.mark.skipif(importlib.util.find_spec("fugashi") is None, reason="the ja extra (fugashi, unidic-lite)")
def test_japanese_is_segmented_by_fugashi():
    assert Tokenizer("ja")("私は日本語を勉強しています。") == "私 は 日本 語 を 勉強 し て い ます ."


def test_settings_rebuild_the_same_tokenizer():
    tok = Tokenizer("fr", lower_remove_accent=True, nfc=True, drop_invisible=True)
    settings = json.loads(json.dumps(tok.settings()))  # as read back from preprocess.json
    again = Tokenizer.from_settings("fr", settings)
    assert (again.lower_remove_accent, again.nfc, again.drop_invisible, again.segmenter) == (True, True, True, "moses")
    assert again.tokenize_block(INPUT) == tok.tokenize_block(INPUT)
    assert Tokenizer.from_settings("fr", {"tokenize": False}) is None


def test_older_settings_rebuild_their_choices_with_a_warning():
    old = {"tokenize": True, "lower_remove_accent": True, "pre_segmented": ["ja"], "segmentation": "bpe"}
    with pytest.warns(UserWarning, match="predates the exact Moses tokenizer"):
        zh = Tokenizer.from_settings("zh", old)
    assert (zh.segmenter, zh.drop_invisible, zh.lower_remove_accent) == ("cjk-chars", True, True)
    with pytest.warns(UserWarning):
        assert Tokenizer.from_settings("ja", old).segmenter == "pre-segmented"


def test_a_different_library_version_warns():
    settings = Tokenizer("zh", segmenter="cjk-chars").settings()
    settings["segmenters"]["zh"] = {"name": "pre-segmented", "version": "jieba 0.1"}
    with pytest.warns(UserWarning, match="jieba 0.1"):
        Tokenizer.from_settings("zh", settings)


def test_settings_out_merges_languages_and_refuses_conflicts(tmp_path):
    settings = tmp_path / "data" / "preprocess.json"
    for lang in ("en", "fr"):
        proc = subprocess.run([sys.executable, "preprocess.py", "tokenize", "--lang", lang, "--lower-remove-accent",
                               "--settings-out", str(settings), "-", "-"], input="Hi.\n", capture_output=True,
                              text=True, cwd=ROOT)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    recorded = json.loads(settings.read_text())
    assert recorded["segmenters"] == {"en": {"name": "moses"}, "fr": {"name": "moses"}}
    assert recorded["lower_remove_accent"] is True and recorded["tokenizer"] == "moses-187a75cb5"
    proc = subprocess.run([sys.executable, "preprocess.py", "tokenize", "--lang", "de", "--settings-out", str(settings),
                           "-", "-"], input="Hi.\n", capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 1 and "lower_remove_accent" in proc.stderr


def test_file_in_parallel_chunks_equals_the_golden(tmp_path):
    src, out = tmp_path / "raw.fr", tmp_path / "tok.fr"
    src.write_bytes((INPUT * 20).encode("utf-8"))
    n = tokenize_file(src, out, "fr", lower_remove_accent=True, moses_whitespace=True, workers=2, chunk_bytes=4096)
    assert n == 20 * INPUT.count("\n")
    assert out.read_bytes().decode("utf-8") == golden("fr", True) * 20


def test_last_line_without_newline_is_still_a_line(tmp_path):
    src, out = tmp_path / "raw.en", tmp_path / "tok.en"
    src.write_text("First line.\nLast line, no newline", encoding="utf-8")
    assert tokenize_file(src, out, "en") == 2
    assert out.read_text(encoding="utf-8") == "First line .\nLast line , no newline\n"


def test_invalid_utf8_names_file_and_line_and_keeps_old_output(tmp_path):
    src, out = tmp_path / "bad.en", tmp_path / "tok.en"
    src.write_bytes(b"good line\nanother\nbroken \xff byte\n")
    out.write_text("previous result\n")
    with pytest.raises(XLMError, match=r"bad\.en:3: invalid UTF-8"):
        tokenize_file(src, out, "en")
    assert out.read_text() == "previous result\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_replace_policy_substitutes_invalid_bytes(tmp_path):
    src, out = tmp_path / "bad.en", tmp_path / "tok.en"
    src.write_bytes(b"broken\xffbyte\n")
    tokenize_file(src, out, "en", errors="replace")
    assert out.read_text(encoding="utf-8") == "broken \ufffd byte\n"  # Moses splits off the symbol
