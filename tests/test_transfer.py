"""Cross-lingual retrieval with a tiny model pretrained (MLM + TLM) on real en-fr text of the slice.

What this checks, honestly: the whole path (Moses tokenization + lowercasing, training with TLM on
pairs, loading the checkpoint, ``Pretrained.encode``, precision@1) retrieves held-out translations
well above chance. It does not show that pretraining beats an untrained model: at the size a test
can afford (a minute of CPU) an untrained model scores about as well, from the tokens both languages
share (``%s``, numbers, option names). That comparison needs real training runs; it is the
experiment of docs/transfer.md (scripts/transfer_experiment.py).
"""

from __future__ import annotations

from collections import Counter

import xlm
from tests.training_data import SLICE, one_thread, tiny_config, write_corpus
from xlm.data.dictionary import Dictionary
from xlm.data.tokenize import Tokenizer
from xlm.retrieval import precision_at_1, read_lines

N_TRAIN, N_TEST = 2000, 200


def tokenized_pairs(folder):
    """The first N_TRAIN pairs, Moses-tokenized and lowercased as the slice config, one word per token."""
    tok = {lg: Tokenizer(lg, lower_remove_accent=True) for lg in ("en", "fr")}
    text = {(split, lg): [tok[lg](s).split() for s in read_lines(SLICE / "para" / f"{split}.en-fr.{lg}", n)]
            for split, n in (("train", N_TRAIN), ("valid", 100), ("test", 100)) for lg in ("en", "fr")}
    counts = Counter(w for (split, _), lines in text.items() if split == "train" for line in lines for w in line)
    specials = Dictionary([]).word2id
    vocab = sorted(((w, c) for w, c in counts.items() if w not in specials), key=lambda wc: (-wc[1], wc[0]))
    dico = Dictionary([w for w, _ in vocab], [c for _, c in vocab])
    folder.mkdir(parents=True)
    dico.write(folder / "vocab")
    for (split, lg), lines in text.items():
        ids = [dico.encode(line) for line in lines]
        write_corpus(folder / f"{split}.{lg}", dico, ids)  # MLM streams: each side of the pairs
        write_corpus(folder / f"{split}.en-fr.{lg}", dico, ids)
    return folder


def test_tiny_tlm_model_retrieves_translations_above_chance(tmp_path):
    from xlm.trainer import Trainer

    with one_thread():
        data = tokenized_pairs(tmp_path / "data")
        cfg = tiny_config(data, tmp_path / "run", [
            "model.emb_dim=64", "model.n_heads=4", "data.bptt=32", "data.tokens_per_batch=600",
            "train.max_steps=300", "train.eval_every=300", "train.save_every=300", "train.eval_at_start=false",
        ])
        Trainer(cfg).train()
        p = xlm.load_pretrained(tmp_path / "run")
        p.lowercase = True  # as the data above (trainer checkpoints do not record it yet)
        en = read_lines(SLICE / "para" / "test.en-fr.en", N_TEST)
        fr = read_lines(SLICE / "para" / "test.en-fr.fr", N_TEST)
        r = precision_at_1(p.encode(en, "en", pooling="mean"), p.encode(fr, "fr", pooling="mean"))
    chance = 100 / N_TEST
    assert r.n == N_TEST
    assert r.src_to_tgt > 3 * chance and r.tgt_to_src > 3 * chance, r
