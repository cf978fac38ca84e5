"""Fine-tuning inputs equal the original's (issue 11, item 6): pair layout, positions, language ids, max_len.

The reference below rebuilds batches by the original's rules, time-major as its code is
(``Dataset.batch_sentences``, ``utils.truncate``, ``utils.concat_batches``), and ours must match it
token for token.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import xlm
from tests.task_data import tiny_model, write_config
from xlm.data.dictionary import EOS_INDEX, PAD_INDEX
from xlm.tasks.classification import SentenceTask
from xlm.tasks.config import load_task_config
from xlm.tasks.inputs import collate, frame, pair, single, truncate


# -- the original's rules, time-major (slen, bs) ----------------------------------------------------
def ref_batch_sentences(sentences):
    lengths = torch.tensor([len(s) + 2 for s in sentences])
    sent = torch.full((int(lengths.max()), len(sentences)), PAD_INDEX, dtype=torch.long)
    sent[0] = EOS_INDEX
    for i, s in enumerate(sentences):
        sent[1 : lengths[i] - 1, i] = torch.tensor(s, dtype=torch.long)
        sent[lengths[i] - 1, i] = EOS_INDEX
    return sent, lengths


def ref_truncate(x, lengths, max_len):
    if lengths.max() > max_len:
        x, lengths = x[:max_len].clone(), lengths.clone()
        for i in range(len(lengths)):
            if lengths[i] > max_len:
                lengths[i] = max_len
                x[max_len - 1, i] = EOS_INDEX
    return x, lengths


def ref_concat(x1, len1, lang1, x2, len2, lang2, reset_positions):
    lengths = len1 + len2 - (0 if reset_positions else 1)
    slen, bs = int(lengths.max()), len(lengths)
    x = torch.full((slen, bs), PAD_INDEX, dtype=torch.long)
    x[: int(len1.max())] = x1
    positions = torch.arange(slen)[:, None].repeat(1, bs)
    langs = torch.full((slen, bs), lang1, dtype=torch.long)
    for i in range(bs):
        l1 = int(len1[i]) if reset_positions else int(len1[i]) - 1
        x[l1 : l1 + len2[i], i] = x2[: len2[i], i]
        if reset_positions:
            positions[l1:, i] -= len1[i]
        langs[l1:, i] = lang2
    assert int((x == EOS_INDEX).sum()) == (4 if reset_positions else 3) * bs
    return x, lengths, positions, langs


def ours(sents_a, sents_b, lang1, lang2, reset, max_len=None):
    feats = []
    for a, b in zip(sents_a, sents_b):
        fa, fb = frame(a), frame(b)
        if max_len:
            fa, fb = truncate(fa, max_len), truncate(fb, max_len)
        feats.append(pair(fa, lang1, fb, lang2, reset))
    return collate(feats)


@pytest.mark.parametrize("reset", [False, True])
@pytest.mark.parametrize("max_len", [None, 6])
def test_pairs_equal_concat_batches(reset, max_len):
    rng = np.random.default_rng(0)
    a = [rng.integers(14, 60, rng.integers(1, 9)).tolist() for _ in range(7)]
    b = [rng.integers(14, 60, rng.integers(1, 9)).tolist() for _ in range(7)]
    lang1, lang2 = (0, 1) if reset else (1, 1)  # the original asserts different languages when resetting
    x1, len1 = ref_batch_sentences(a)
    x2, len2 = ref_batch_sentences(b)
    if max_len:
        x1, len1 = ref_truncate(x1, len1, max_len)
        x2, len2 = ref_truncate(x2, len2, max_len)
    rx, rlen, rpos, rlangs = ref_concat(x1, len1, lang1, x2, len2, lang2, reset)
    x, lengths, langs, pos = ours(a, b, lang1, lang2, reset, max_len)
    assert torch.equal(lengths, rlen)
    assert torch.equal(x, rx.T)
    real = torch.arange(x.shape[1])[None, :] < lengths[:, None]
    assert torch.equal(pos[real], rpos.T[real]) and torch.equal(langs[real], rlangs.T[real])


def test_a_pair_by_hand():
    x, lengths, langs, pos = collate([pair(frame([20, 21, 22]), 3, frame([30, 31]), 5)])
    assert x[0].tolist() == [1, 20, 21, 22, 1, 30, 31, 1] and lengths.tolist() == [8]  # three </s>
    assert pos[0].tolist() == list(range(8))                                             # positions continue
    assert langs[0].tolist() == [3, 3, 3, 3, 5, 5, 5, 5]                                  # shared </s>: lang2
    x, _, langs, pos = collate([pair(frame([20, 21, 22]), 3, frame([30, 31]), 5, reset_positions=True)])
    assert x[0].tolist() == [1, 20, 21, 22, 1, 1, 30, 31, 1] and pos[0].tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3]
    x, _, langs, _ = collate([single(frame([20, 21]), 2)], use_langs=False)
    assert x[0].tolist() == [1, 20, 21, 1] and langs is None
    assert truncate(frame(list(range(20, 30))), 6).tolist() == [1, 20, 21, 22, 23, 1]


def test_sentence_task_truncates_training_sentences_only(tmp_path):
    """max_len as the original: each training sentence cut to max_len (framing included); evaluation uncut."""
    tiny_model(tmp_path / "model.pt")
    data = tmp_path / "task"
    data.mkdir()
    long_a, long_b = " ".join(f"w{i}" for i in range(12)), " ".join(f"w{i}" for i in range(20, 29))
    for split, lang in (("train", "en"), ("valid", "en"), ("valid", "fr"), ("test", "en"), ("test", "fr")):
        (data / f"{split}.{lang}.tsv").write_text(f"{long_a}\t{long_b}\tsame\nw1\tw2 w3\tother\n", "utf-8")
    cfg = load_task_config("sentence", write_config(
        tmp_path / "c.yaml", model={"path": str(tmp_path / "model.pt")},
        data={"path": str(data), "langs": ["en", "fr"], "labels": ["same", "other"], "tokenized": True,
              "max_len": 8}))
    task = SentenceTask(cfg)
    from xlm.logging import RunLogger

    task.load(xlm.load_pretrained(tmp_path / "model.pt"), RunLogger(tmp_path / "log", False))
    d = xlm.load_pretrained(tmp_path / "model.pt").dictionary
    ids_a, ids_b = d.encode(long_a.split()), d.encode(long_b.split())
    train = task.features[("train", "en")][0]
    assert train.ids.tolist() == [1, *ids_a[:6], 1, *ids_b[:6], 1]   # each side: 8 tokens, last one </s>
    valid = task.features[("valid", "fr")][0]
    assert valid.ids.tolist() == [1, *ids_a, 1, *ids_b, 1] and (valid.lang_a, valid.lang_b) == (1, 1)
    assert task.features[("train", "en")][1].ids.tolist() == [1, d.index("w1"), 1, d.index("w2"), d.index("w3"), 1]
    assert task.y[("train", "en")].tolist() == [0, 1]


def test_translate_train_all_trains_on_every_language_with_its_language_id(tmp_path):
    from xlm.tasks.runner import Finetuner

    tiny_model(tmp_path / "model.pt")
    data = tmp_path / "task"
    data.mkdir()
    for split, lang in (("train", "en"), ("train", "fr"), ("valid", "en"), ("valid", "fr"), ("test", "en"),
                        ("test", "fr")):
        (data / f"{split}.{lang}.tsv").write_text("w1 w2\tw3\tsame\nw4\tw5\tother\nw6\tw7\tother\n", "utf-8")
    cfg = load_task_config("sentence", write_config(
        tmp_path / "c.yaml", run={"dir": str(tmp_path / "run")}, model={"path": str(tmp_path / "model.pt")},
        data={"path": str(data), "langs": ["en", "fr"], "train_langs": ["en", "fr"], "labels": ["same", "other"],
              "tokenized": True}, train={"batch_size": 4}))
    ft = Finetuner(SentenceTask(cfg))
    assert ft.n_train == 6 and ft.steps_per_epoch == 2
    batch = ft._batch_items(0) + ft._batch_items(1)
    assert sorted(batch) == [(lg, i) for lg in ("en", "fr") for i in range(3)]  # one epoch: every example once
    assert {f.lang_a for f in ft.task.features[("train", "fr")]} == {1}
    ft.log.close()


def test_qa_context_words_and_windows():
    import numpy as np

    from xlm.tasks.qa import QATask, context_words

    ctx = "The Denver  Broncos won.\n北京大学 (1898)"
    assert [ctx[a:b] for a, b in context_words(ctx)] == ["The", "Denver", "Broncos", "won.", "北", "京", "大", "学",
                                                          "(1898)"]
    cfg = load_task_config("qa", None, ["model.path=m", "data.path=d", "data.langs=[en]", "data.max_len=24",
                                        "data.max_query_len=4", "data.doc_stride=5"])
    task = QATask(cfg)
    ctx_ids = np.arange(100, 130)  # 30 context pieces; room for 24 - 2 - 3 = 19 per window
    wins = list(task._windows(0, ctx_ids, np.array([50, 51]), 0, 1, 24))
    assert [w.start for w, _ in wins] == [0, 5, 10, 15]
    w, f = wins[1]
    assert f.ids.tolist() == [1, 50, 51, 1, *range(105, 124), 1] and (f.split, f.lang_a, f.lang_b) == (3, 0, 1)
    # every context piece is read in exactly one window: the one where it has the most context
    owner = {}
    for w, _ in wins:
        for j in np.flatnonzero(w.max_context):
            assert w.start + j not in owner
            owner[w.start + j] = w.start
    assert sorted(owner) == list(range(30)) and owner[0] == 0 and owner[12] == 5 and owner[29] == 15


def test_finetune_layers_and_class_weights_as_the_original(tmp_path):
    import torch.nn.functional as F

    from xlm.logging import RunLogger
    from xlm.tasks.heads import finetuned_parameters

    enc = xlm.load_pretrained(tiny_model(tmp_path / "model.pt")).model  # 1 layer
    names = {id(p): n for n, p in enc.named_parameters()}

    def chosen(spec):
        return sorted({names[id(p)].split(".")[0] for p in finetuned_parameters(enc, spec)})

    emb = ["embeddings", "lang_embeddings", "layer_norm_emb", "position_embeddings"]
    layer = ["attentions", "ffns", "layer_norm1", "layer_norm2"]
    assert chosen("0:_1") == sorted(emb + layer) and chosen("0:0") == emb
    assert chosen("1:_1") == layer and chosen("_1:_1") == layer and chosen("1:0") == []
    data = tmp_path / "task"
    data.mkdir()
    rows = "w1\tw2\ta\nw3\tw4\tb\nw5\tw6\tb\nw7\tw8\tb\n"  # 1 a, 3 b: weights 1/1 and 1/3, normalized
    for split in ("train", "valid", "test"):
        (data / f"{split}.en.tsv").write_text(rows, "utf-8")
    cfg = load_task_config("sentence", write_config(
        tmp_path / "c.yaml", model={"path": str(tmp_path / "model.pt")}, train={"weighted": True},
        data={"path": str(data), "langs": ["en"], "tokenized": True}))
    task = SentenceTask(cfg)
    task.load(xlm.load_pretrained(tmp_path / "model.pt"), RunLogger(tmp_path / "log", False))
    assert task.labels == ["a", "b"] and task.class_weights.tolist() == pytest.approx([0.75, 0.25])
    logits = torch.randn(4, 2)
    y = task.targets("en", [0, 1, 2, 3])
    mean = task.loss(logits, y) / task.weight([("en", i) for i in range(4)])
    assert mean.item() == pytest.approx(F.cross_entropy(logits, y, weight=task.class_weights).item())
