#!/usr/bin/env python
"""How often does the exported Hugging Face tokenizer give our ids, and why not when it does not?

    pip install rjieba                      # HF's Chinese segmenter (only for zh)
    python scripts/hf_tokenizer_agreement.py [--data DIR] [--langs en fr de zh] [--cased]

DIR is a preprocessed folder (``codes``, ``vocab``, ``preprocess.json``); by default one is made
in a temporary folder from the bundled slice's train files of every language asked for (8,000
joint codes, lowercased as the released XLM 1024 models). Its tokenizer is exported as
``save_pretrained(format="hf")`` exports it and read back with ``XLMTokenizer.from_pretrained``.

For every test file of msgcorpus (the bundled slice, and ../shared/data/msgcorpus when present)
and every line, ours are the ids of ``Pretrained.tokenize``'s pipeline (framing ``</s> ... </s>``);
HF's are ``build_inputs_with_special_tokens(convert_tokens_to_ids(tok._tokenize(line, lang=L)))``:
with transformers 5.x, ``tok(line, lang=L)`` never passes ``lang`` on (``tokenize`` calls
``_tokenize(text)`` without it), so every language gets the English rules; that call is measured
too ("default call"). A line whose ids differ is attributed by replaying HF's text pipeline with
some of its steps replaced by ours: the smallest set of steps whose replacement gives our tokens is
the cause. Printed per file: lines, lines where HF's text pipeline gives our tokens and the id
agreement on them (BPE + vocabulary), overall id agreement, the default call's, that of our tokens
fed with ``bypass_tokenizer=True`` (HF's BPE alone), and the causes with an example each.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import unicodedata
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from xlm.data.dictionary import EOS_INDEX, Dictionary  # noqa: E402
from xlm.data.provenance import for_training  # noqa: E402
from xlm.hf_folder import write_tokenizer  # noqa: E402
from xlm.text import TextPipeline, make_tokenizer  # noqa: E402

SLICE = ROOT / "data" / "msgcorpus"
SHARED = ROOT.parent / "shared" / "data" / "msgcorpus"

# The steps of HF's XLMTokenizer._tokenize (languages other than zh/th/ja) that differ from ours, in
# its order; each can be swapped for ours to see whether it explains a difference.
CAUSES = {
    "punct": "replace-unicode-punctuation: HF maps full-width \uff11 to '1' and eats any whitespace after "
             "\u3002/\uff0e; the perl script (and ours) map \uff11 to '\"' and eat spaces only",
    "normalizer": "sacremoses MosesPunctNormalizer without perl_parity (HF) vs perl_parity=True (ours, the "
                  "perl script): e.g. NBSP\u00abNBSP -> '\"' vs ' \"'",
    "controls": "remove-non-printing-char: HF deletes every C* character (tab, CR, zero-width, soft hyphen...), "
                "gluing the words around controls; the perl script (and ours) turn controls into spaces",
}
LANG_CAUSE = ("the language's rules: tok(line, lang=L) never reaches them in transformers 5.x, so the "
              "English normalizer and Moses rules apply (apostrophes, quotes before a period, zh/ja ideographs)")
ALL_STEPS = {"lang": LANG_CAUSE, **CAUSES}
ZH_CAUSE = ("zh segmentation: HF segments with rjieba and does not run the Moses tokenizer (the original: "
            "Stanford segmenter; ours: one token per CJK ideograph, then Moses)")


def build_data(langs: list[str], lowercase: bool, out: Path) -> Path:
    from xlm.data.pipeline import BPEConfig, PipelineConfig, run_pipeline

    mono = {lang: {"train": str(SLICE / "mono" / f"train.{lang}")} for lang in langs}
    run_pipeline(PipelineConfig(output=str(out), lower_remove_accent=lowercase, bpe=BPEConfig(n_codes=8000),
                                mono=mono))
    return out


class HFReplay:
    """HF's text pipeline (languages other than zh/th/ja) with chosen steps replaced by ours.

    ``base`` is the language whose rules HF applied (``en`` for a call that drops ``lang``); the
    step ``lang`` replaces them with ``lang``'s (normalizer and Moses rules, and for zh/ja our
    one-token-per-ideograph split).
    """

    def __init__(self, lang: str, base: str, lowercase: bool):
        import sacremoses
        from transformers.models.xlm import tokenization_xlm as hf

        from xlm.data import tokenize as ours

        self.hf, self.ours, self.lang, self.base, self.lowercase = hf, ours, lang, base, lowercase
        self.norm = {(lg, parity): sacremoses.MosesPunctNormalizer(lg, perl_parity=parity)
                     for lg in {lang, base} for parity in (False, True)}
        self.moses = {lg: sacremoses.MosesTokenizer(lg) for lg in {lang, base}}

    def __call__(self, line: str, swap: frozenset[str]) -> list[str]:
        lg = self.lang if "lang" in swap else self.base
        text = (self.ours.replace_unicode_punctuation if "punct" in swap else self.hf.replace_unicode_punct)(line)
        text = self.norm[lg, "normalizer" in swap].normalize(text)
        text = (self.ours.remove_non_printing if "controls" in swap else self.hf.remove_non_printing_char)(text)
        if lg == "ro":
            text = self.hf.romanian_preprocessing(text)
        if "lang" in swap and lg in self.ours.CJK_SEGMENTED_LANGS:
            text = self.ours.split_cjk_ideographs(text)
        words = self.moses[lg].tokenize(text, return_str=False, escape=False)
        if self.lowercase:
            words = self.hf.lowercase_and_remove_accent(words)
        return [w for w in words if w]


def attribute(replay: HFReplay, line: str, hf_words: list[str], ours_words: list[str], fixed: frozenset[str],
              steps: list[str]) -> str:
    """The smallest set of HF's steps whose replacement by ours turns HF's tokens into ours."""
    if replay(line, fixed) != hf_words:
        return "replay"  # our replay of HF's pipeline is not HF's pipeline: a bug in this script
    for size in range(1, len(steps) + 1):
        for subset in itertools.combinations(steps, size):
            if replay(line, fixed | frozenset(subset)) == ours_words:
                return "+".join(subset)
    return "unexplained"


def words_of(pieces: list[str]) -> list[str]:
    """HF pieces (``hel``, ``lo</w>``) -> the words they spell."""
    words, cur = [], ""
    for piece in pieces:
        if piece.endswith("</w>"):
            words.append(cur + piece[:-4])
            cur = ""
        else:
            cur += piece
    return words + ([cur] if cur else [])


def measure(path: Path, lang: str, tok, pipe: TextPipeline, dico: Dictionary, lowercase: bool) -> dict:
    tokenizer = make_tokenizer(lang, pipe.settings)
    replay, replay_en = HFReplay(lang, lang, lowercase), HFReplay(lang, "en", lowercase)
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    stats: Counter[str] = Counter()
    causes: Counter[str] = Counter()
    default_causes: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for line in lines:
        ours_words = tokenizer(line).split()
        ours_ids = [EOS_INDEX, *dico.encode(pipe(line, lang)), EOS_INDEX]
        hf_pieces = tok._tokenize(line, lang=lang)
        hf_ids = tok.build_inputs_with_special_tokens(tok.convert_tokens_to_ids(hf_pieces))
        default_pieces = tok.tokenize(line)
        default_ids = tok(line)["input_ids"]
        bypass = tok._tokenize(" ".join(ours_words), bypass_tokenizer=True)  # our tokens, HF's BPE
        stats["bypass_equal"] += tok.build_inputs_with_special_tokens(tok.convert_tokens_to_ids(bypass)) == ours_ids
        stats["lines"] += 1
        stats["ids_equal"] += hf_ids == ours_ids
        stats["default_equal"] += default_ids == ours_ids
        same_words = words_of(hf_pieces) == ours_words
        if same_words:
            stats["same_tokens"] += 1
            stats["same_tokens_ids_equal"] += hf_ids == ours_ids
        if hf_ids != ours_ids:
            if same_words:
                cause = "bpe"  # same words, different pieces or ids: a BPE/vocabulary difference
            elif lang == "zh":
                cause = "zh"
            else:
                cause = attribute(replay, line, words_of(hf_pieces), ours_words, frozenset(), list(CAUSES))
            causes[cause] += 1
            examples.setdefault(cause, line)
        if default_ids != ours_ids:
            if words_of(default_pieces) == ours_words:
                cause = "bpe"
            else:
                cause = attribute(replay_en, line, words_of(default_pieces), ours_words, frozenset(),
                                  ["lang", *CAUSES])
            default_causes[cause] += 1
            examples.setdefault("default " + cause, line)
    return {"stats": stats, "causes": causes, "default_causes": default_causes, "examples": examples}


def describe(cause: str) -> str:
    if cause == "zh":
        return ZH_CAUSE
    if cause == "bpe":
        return "same words, different ids (BPE or vocabulary)"
    if cause in ("replay", "unexplained"):
        return cause
    return " AND ".join(ALL_STEPS[c].split(":")[0] for c in cause.split("+"))


def show(text: str) -> str:
    return "".join(c if unicodedata.category(c)[0] not in "CZ" or c == " " else f"<U+{ord(c):04X}>" for c in text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, help="preprocessed folder (codes, vocab, preprocess.json)")
    ap.add_argument("--langs", nargs="+", default=["en", "fr", "de", "zh"])
    ap.add_argument("--cased", action="store_true", help="no lowercasing (when building the data)")
    args = ap.parse_args()
    import transformers
    from transformers import XLMTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or build_data(args.langs, not args.cased, Path(tmp) / "data")
        settings, _ = for_training(data, {}, bpe_vocab=True)
        codes = (data / "codes").read_text(encoding="utf-8")
        dico = Dictionary.read_vocab(data / "vocab")
        lang2id = {lang: i for i, lang in enumerate(sorted(args.langs))}
        write_tokenizer(Path(tmp) / "hf", dico, codes, settings, lang2id, 512)
        tok = XLMTokenizer.from_pretrained(Path(tmp) / "hf")
        pipe = TextPipeline(settings or {}, codes)
        lowercase = bool((settings or {}).get("lower_remove_accent"))
        print(f"transformers {transformers.__version__}; data {data} ({len(dico)} words, settings {settings})")
        print(f"HF framing: {tok.convert_ids_to_tokens(tok('a')['input_ids'])}")
        print()
        print("| file | lines | HF tokens = ours | ids equal on those | ids equal, all lines "
              "| ids equal, default call (lang=en) | ids equal, our tokens + bypass_tokenizer |")
        print("|---|---|---|---|---|---|---|")
        all_causes = []
        for corpus in (SLICE, SHARED):
            for lang in args.langs:
                path = corpus / "mono" / f"test.{lang}"
                if not path.is_file():
                    continue
                r = measure(path, lang, tok, pipe, dico, lowercase)
                st = r["stats"]
                name = f"{'slice' if corpus == SLICE else 'shared'} test.{lang}"
                n, same, good = st["lines"], st["same_tokens"], st["same_tokens_ids_equal"]
                print(f"| {name} | {n} | {same} ({100 * same / n:.2f}%) | {good}/{same} "
                      f"({100 * good / max(same, 1):.2f}%) | {100 * st['ids_equal'] / n:.2f}% | "
                      f"{100 * st['default_equal'] / n:.2f}% | {100 * st['bypass_equal'] / n:.2f}% |")
                all_causes.append((name, r))
        print()
        print("Lines whose ids differ, by cause (the smallest set of HF's steps that, replaced by ours, "
              "gives our tokens):")
        for name, r in all_causes:
            for cause, n in r["causes"].most_common():
                print(f"- {name}: {n} x {describe(cause)}; e.g. {show(r['examples'][cause])[:110]!r}")
        print()
        print("The default call tok(line) (lang dropped), lines whose ids differ, by cause:")
        for name, r in all_causes:
            for cause, n in r["default_causes"].most_common():
                print(f"- {name}: {n} x {describe(cause)}; e.g. {show(r['examples']['default ' + cause])[:110]!r}")
        print()
        for key, text in ALL_STEPS.items():
            print(f"  {key}: {text}")
        print(f"  zh: {ZH_CAUSE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
