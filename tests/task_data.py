"""Small synthetic tasks in the benchmarks' real file formats, and a tiny untrained model to fine-tune on them.

Each task is learnable from the words alone and has a ``shuffled`` twin whose training labels are
permuted across examples (same label distribution, no relation to the input): the same run on it
must stay at chance, so that a pass shows learning, not a leak.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
import yaml

import xlm
from xlm.config import ModelConfig
from xlm.data.dictionary import Dictionary

WORDS = [f"w{i}" for i in range(40)]
LANGS = {"en": 0, "fr": 1}


def tiny_model(path: Path, max_positions: int = 64, same_langs: bool = False) -> Path:
    """1 layer, dimension 32, untrained; ``same_langs`` zeroes the language embeddings (en and fr look alike)."""
    torch.manual_seed(0)
    cfg = ModelConfig(emb_dim=32, n_layers=1, n_heads=2, dropout=0.0, attention_dropout=0.0,
                      max_positions=max_positions)
    m = xlm.TransformerModel(cfg, 14 + len(WORDS), 2)
    if same_langs:
        with torch.no_grad():
            m.lang_embeddings.weight.zero_()
    return xlm.save_pretrained(xlm.Pretrained(m, Dictionary(WORDS), dict(LANGS)), path)


def write_config(path: Path, **sections) -> Path:
    path.write_text(yaml.safe_dump(sections), encoding="utf-8")
    return path


def _shuffle_labels(labels: list, seed: int) -> list:
    labels = list(labels)
    random.Random(seed).shuffle(labels)
    return labels


# -- sentence pairs: are A and B drawn from the same half of the vocabulary? ---------------------------
def pair_rows(rng: random.Random, n: int) -> list[tuple[str, str, str]]:
    halves = (WORDS[:20], WORDS[20:])
    out = []
    for _ in range(n):
        ga, gb = rng.randrange(2), rng.randrange(2)
        a, b = rng.sample(halves[ga], rng.randint(3, 6)), rng.sample(halves[gb], rng.randint(3, 6))
        out.append((" ".join(a), " ".join(b), "same" if ga == gb else "other"))
    return out


def write_pair_task(folder: Path, shuffled: bool = False, n_train: int = 600, n_eval: int = 200) -> Path:
    """``{split}.{lang}.tsv``: ``A<TAB>B<TAB>label`` (the tsv format's default columns)."""
    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    train = pair_rows(rng, n_train)
    if shuffled:
        train = [(a, b, y) for (a, b, _), y in zip(train, _shuffle_labels([r[2] for r in train], 1))]
    (folder / "train.en.tsv").write_text("".join(f"{a}\t{b}\t{y}\n" for a, b, y in train), encoding="utf-8")
    for split in ("valid", "test"):
        for lang in LANGS:
            rows = pair_rows(rng, n_eval)
            (folder / f"{split}.{lang}.tsv").write_text("".join(f"{a}\t{b}\t{y}\n" for a, b, y in rows), "utf-8")
    return folder


# -- tokens: w10-w19 start a PER entity, a following w20-w29 continues it -----------------------------
def tagged_sentence(rng: random.Random) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    while len(out) < 7:
        r = rng.random()
        if r < 0.3:
            out.append((rng.choice(WORDS[10:20]), "B-PER"))
            if rng.random() < 0.5:
                out.append((rng.choice(WORDS[20:30]), "I-PER"))
        elif r < 0.45:
            out.append((rng.choice(WORDS[30:40]), "B-LOC"))
        else:  # w20-w29 not after a PER word are no entity
            after_per = bool(out) and out[-1][1].endswith("PER")
            out.append((rng.choice(WORDS[:10] if after_per else WORDS[:10] + WORDS[20:30]), "O"))
    return out[:7]


def write_ner_task(folder: Path, shuffled: bool = False, n_train: int = 400, n_eval: int = 150) -> Path:
    """CoNLL-2003 style files (``word POS chunk tag``, -DOCSTART- lines); every sentence has 7 words."""
    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)

    def write(path: Path, sents: list[list[tuple[str, str]]]) -> None:
        lines = ["-DOCSTART- -X- -X- O", ""]
        for s in sents:
            lines += [f"{w} NN I-NP {t}" for w, t in s] + [""]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    train = [tagged_sentence(rng) for _ in range(n_train)]
    if shuffled:  # each sentence gets the tag sequence of another one
        tags = _shuffle_labels([[t for _, t in s] for s in train], 1)
        train = [[(w, t) for (w, _), t in zip(s, ts)] for s, ts in zip(train, tags)]
    write(folder / "train.en.conll", train)
    for split in ("valid", "test"):
        for lang in LANGS:
            write(folder / f"{split}.{lang}.conll", [tagged_sentence(rng) for _ in range(n_eval)])
    return folder


# -- QA: the context holds two words of w30-w39; "w0" asks for the first, "w1" for the second ------------
def qa_example(rng: random.Random, qid: str) -> dict:
    filler = rng.sample(WORDS[2:30], 10)
    a, b = rng.sample(WORDS[30:40], 2)
    i, j = sorted(rng.sample(range(11), 2))
    words = filler[:i] + [a] + filler[i:j] + [b] + filler[j:]
    first = rng.random() < 0.5
    answer = a if first else b
    k = words.index(answer)
    start = len(" ".join(words[:k])) + (1 if k else 0)
    return {"context": " ".join(words), "qas": [{"id": qid, "question": "w0" if first else "w1",
                                                   "answers": [{"text": answer, "answer_start": start}]}]}


def write_qa_task(folder: Path, shuffled: bool = False, n_train: int = 500, n_eval: int = 150) -> Path:
    """SQuAD v1.1 JSON files ``{train,dev,test}.{lang}.json`` (the qa task's default names)."""
    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)

    def dump(path: Path, paras: list[dict]) -> None:
        path.write_text(json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": paras}]}), "utf-8")

    train = [qa_example(rng, f"train-{n}") for n in range(n_train)]
    if shuffled:  # each question gets another context's answer position (a random word of its own context)
        for para in train:
            words = para["context"].split()
            k = rng.randrange(len(words))
            start = len(" ".join(words[:k])) + (1 if k else 0)
            para["qas"][0]["answers"] = [{"text": words[k], "answer_start": start}]
    dump(folder / "train.en.json", train)
    for split in ("dev", "test"):
        for lang in LANGS:
            dump(folder / f"{split}.{lang}.json", [qa_example(rng, f"{split}-{lang}-{n}") for n in range(n_eval)])
    return folder


# -- bitext: the "translation" of a sentence is the same words, in the other language -----------------------
def write_bucc(folder: Path, shuffled_gold: bool = False, n_pairs: int = 30, n_extra: int = 30) -> Path:
    """BUCC files ``fr-en.{sample,test}.{fr,en,gold}``: shared sentences plus unpaired ones on each side."""
    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("sample", "test"):
        pairs = [" ".join(rng.sample(WORDS, 6)) for _ in range(n_pairs)]
        fr = [(f"fr-{split}-{i:04d}", s) for i, s in enumerate(pairs + [" ".join(rng.sample(WORDS, 6))
                                                                          for _ in range(n_extra)])]
        en = [(f"en-{split}-{i:04d}", s) for i, s in enumerate(pairs + [" ".join(rng.sample(WORDS, 6))
                                                                          for _ in range(n_extra)])]
        gold = [(fr[i][0], en[i][0]) for i in range(n_pairs)]
        if shuffled_gold:
            targets = _shuffle_labels([g[1] for g in gold], 2)
            gold = [(a, b) for (a, _), b in zip(gold, targets)]
        rng.shuffle(fr)
        rng.shuffle(en)
        (folder / f"fr-en.{split}.fr").write_text("".join(f"{i}\t{s}\n" for i, s in fr), "utf-8")
        (folder / f"fr-en.{split}.en").write_text("".join(f"{i}\t{s}\n" for i, s in en), "utf-8")
        (folder / f"fr-en.{split}.gold").write_text("".join(f"{a}\t{b}\n" for a, b in gold), "utf-8")
    return folder
