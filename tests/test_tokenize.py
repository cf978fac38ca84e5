"""Moses-style tokenization: the original tokenize.sh steps, CJK handling, files in parallel."""

from __future__ import annotations

from pathlib import Path

import pytest

from xlm.data.tokenize import (
    Tokenizer,
    lowercase_and_remove_accent,
    remove_non_printing,
    replace_unicode_punctuation,
    tokenize_file,
)
from xlm.errors import XLMError


def test_replace_unicode_punctuation_ports_the_perl_script():
    assert replace_unicode_punctuation("你好，世界。  再见！（１０％）") == '你好,世界. 再见!("0%)'
    assert replace_unicode_punctuation("ａ．　b【x】〈y〉…’") == "ａ. \u3000b[x]<y>...'"
    assert replace_unicode_punctuation("plain ascii, unchanged.") == "plain ascii, unchanged."


def test_remove_non_printing_spaces_controls_and_drops_invisible_characters():
    assert remove_non_printing("a\tb\x07c") == "a b c"
    assert remove_non_printing("in\u00adformation\ufeff") == "information"
    assert remove_non_printing("x\u200by\u2028z") == "x y z"


def test_english_pipeline_normalizes_punctuation_and_tokenizes():
    tok = Tokenizer("en")
    assert tok("Hello, “world”… it’s 50 % done!") == 'Hello , " world ... " it \'s 50 % done !'
    assert tok("  spaces\tand\ttabs  ") == "spaces and tabs"
    assert tok("") == ""


def test_french_quotes_and_elision():
    assert Tokenizer("fr")("« Bonjour » l’homme") == '" Bonjour " l\' homme'


def test_lowercase_and_remove_accent():
    assert lowercase_and_remove_accent("Élève DÉJÀ Ça Straße") == "eleve deja ca straße"
    assert Tokenizer("fr", lower_remove_accent=True)("Où est l'Élève ?") == "ou est l' eleve ?"


def test_chinese_ideographs_become_single_tokens():
    assert Tokenizer("zh")("我有3个apple（苹果）！") == "我 有 3 个 apple ( 苹 果 ) !"


def test_pre_segmented_input_is_only_normalized():
    assert Tokenizer("zh", pre_segmented=True)("我 有  苹果，好吗？") == "我 有 苹果,好吗?"


def test_bad_language_code_is_an_error():
    with pytest.raises(XLMError, match="--lang"):
        Tokenizer("english!")


def _corpus_lines(slice_dir: Path, n: int) -> list[str]:
    return (slice_dir / "mono" / "train.fr").read_text(encoding="utf-8").split("\n")[:n]


def test_file_in_parallel_chunks_equals_line_by_line(tmp_path, slice_dir):
    lines = _corpus_lines(slice_dir, 600) + ["", "Dernière ligne sans fin"]
    src = tmp_path / "raw.fr"
    src.write_text("\n".join(lines), encoding="utf-8")  # no final newline: still a line
    out = tmp_path / "tok.fr"
    n = tokenize_file(src, out, "fr", lower_remove_accent=True, workers=2, chunk_bytes=4096)
    tok = Tokenizer("fr", lower_remove_accent=True)
    assert n == len(lines)
    assert out.read_text(encoding="utf-8") == "".join(tok(line) + "\n" for line in lines)


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
