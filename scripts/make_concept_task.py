"""Derive a token-level task from the bundled corpus: tag the words that name one of eight UI concepts.

Every sentence of ``data/msgcorpus/mono/{split}.{lang}`` is tokenized as the models' pretraining
text was (Moses; every CJK ideograph a token) and written in CoNLL format (``word tag`` per line),
its words tagged IOB2 with eight concepts of user-interface messages: FILE, DIR, ERROR, USER, VALUE,
COMMAND, WINDOW, PASSWORD. A word (or a run of words: French ``mot de passe``, Chinese ``文 件``)
is tagged when it is one of the concept's forms in :data:`LEXICON` for the sentence's language,
compared after lowercasing and accent removal, longest run first. English ``Windows`` with a capital
W is the operating system and is not tagged.

The English forms never occur in French, German or Chinese sentences written in those languages:
a tagger trained on English words alone (a regular expression or a word list) finds none of the
others' concepts, so zero-shot transfer needs an encoder that represents ``fichier``, ``Datei`` and
``文件`` as it represents ``file``. The lexicon is hand-written and was checked against the en-fr and
en-zh parallel data (e.g. 284 of the 294 training pairs with English "file(s)" have 文件); it is
the definition of the task, not a perfect semantic annotation (``Konfigurationsdatei`` is a file
but is not tagged, since only whole words match).

Files under ``--out``: ``{train,valid,test}.en.conll`` from the English splits, and ``test.{fr,de,zh}.conll``
from the valid and test splits of the other languages together (the zero-shot protocol chooses the
model on English alone, so their valid splits have no other use, and twice the sentences halve
the noise of the scores).

    python scripts/make_concept_task.py --out data/processed/msgcorpus_concepts
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from xlm.data.text.normalize import lowercase_and_remove_accent  # noqa: E402
from xlm.data.tokenize import Tokenizer  # noqa: E402
from xlm.io import atomic_write_text  # noqa: E402

LANGS = ("en", "fr", "de", "zh")
LEXICON: dict[str, dict[str, list[str]]] = {
    "FILE": {"en": ["file", "files"], "fr": ["fichier", "fichiers"], "de": ["Datei", "Dateien"], "zh": ["文件"]},
    "DIR": {"en": ["directory", "directories", "folder", "folders"],
            "fr": ["répertoire", "répertoires", "dossier", "dossiers"],
            "de": ["Verzeichnis", "Verzeichnisse", "Verzeichnisses", "Verzeichnissen", "Ordner", "Ordners"],
            "zh": ["目录", "文件夹"]},
    "ERROR": {"en": ["error", "errors"], "fr": ["erreur", "erreurs"], "de": ["Fehler", "Fehlern", "Fehlers"],
              "zh": ["错误"]},
    "USER": {"en": ["user", "users"], "fr": ["utilisateur", "utilisateurs", "utilisatrice", "utilisatrices"],
             "de": ["Benutzer", "Benutzers", "Benutzern", "Nutzer"], "zh": ["用户"]},
    "VALUE": {"en": ["value", "values"], "fr": ["valeur", "valeurs"],
              "de": ["Wert", "Werte", "Werts", "Wertes", "Werten"], "zh": ["值"]},
    "COMMAND": {"en": ["command", "commands"], "fr": ["commande", "commandes"],
                "de": ["Befehl", "Befehle", "Befehls", "Befehlen"], "zh": ["命令"]},
    "WINDOW": {"en": ["window", "windows"], "fr": ["fenêtre", "fenêtres"], "de": ["Fenster", "Fensters", "Fenstern"],
               "zh": ["窗口"]},
    "PASSWORD": {"en": ["password", "passwords", "passphrase"], "fr": ["mot de passe", "mots de passe"],
                 "de": ["Passwort", "Passworts", "Passwörter", "Kennwort", "Kennworts", "Kennwörter"],
                 "zh": ["密码", "口令"]},
}
FILES = {"en": {"train": ["train"], "valid": ["valid"], "test": ["test"]},  # output split -> corpus splits
         **{lang: {"test": ["valid", "test"]} for lang in ("fr", "de", "zh")}}


def tokenizer(lang: str) -> Tokenizer:
    """As configs/data/msgcorpus_4lang.yaml tokenized the pretraining text (zh: one token per ideograph)."""
    return Tokenizer(lang, segmenter="cjk-chars" if lang == "zh" else None)


def forms(lang: str) -> dict[tuple[str, ...], str]:
    """Normalized word runs -> concept, for one language (ideographs split as the tokenizer splits them)."""
    tok = tokenizer(lang)
    return {tuple(lowercase_and_remove_accent(tok(f)).split()): concept
            for concept, by_lang in LEXICON.items() for f in by_lang[lang]}


def tag(words: list[str], lexicon: dict[tuple[str, ...], str], lang: str) -> list[str]:
    norm = [lowercase_and_remove_accent(w) for w in words]
    longest = max(len(k) for k in lexicon)
    tags = ["O"] * len(words)
    i = 0
    while i < len(words):
        for n in range(min(longest, len(words) - i), 0, -1):
            concept = lexicon.get(tuple(norm[i : i + n]))
            if concept and not (lang == "en" and n == 1 and words[i] == "Windows"):
                tags[i : i + n] = [f"B-{concept}"] + [f"I-{concept}"] * (n - 1)
                i += n
                break
        else:
            i += 1
    return tags


def build(corpus: Path, lang: str, splits: list[str]) -> tuple[str, Counter]:
    tok = tokenizer(lang)
    lexicon = forms(lang)
    lines, counts = [], Counter()
    raws = [line for split in splits for line in (corpus / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()]
    for raw in raws:
        words = tok(raw).split()
        if not words:
            continue
        tags = tag(words, lexicon, lang)
        counts.update(t[2:] for t in tags if t.startswith("B-"))
        lines += [f"{w} {t}" for w, t in zip(words, tags)] + [""]
    return "\n".join(lines) + "\n", counts


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default=str(ROOT / "data" / "msgcorpus" / "mono"), help="folder of {split}.{lang}")
    ap.add_argument("--out", default="data/processed/msgcorpus_concepts")
    args = ap.parse_args(argv)
    out = Path(args.out)
    for lang in LANGS:
        for split, sources in FILES[lang].items():
            text, counts = build(Path(args.corpus), lang, sources)
            atomic_write_text(out / f"{split}.{lang}.conll", text)
            print(f"{split}.{lang}: {text.count(chr(10) + chr(10))} sentences, {sum(counts.values())} concepts "
                  f"({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})")


if __name__ == "__main__":
    main()
