"""Fine-tuned heads export to the real transformers classes with identical logits; hidden states for probing."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    XLMForQuestionAnsweringSimple,
    XLMForSequenceClassification,
    XLMForTokenClassification,
    XLMModel,
)

import xlm
from tests.task_data import tiny_model, write_config, write_ner_task, write_pair_task, write_qa_task
from tests.training_data import one_thread
from xlm.errors import XLMError
from xlm.finetune import run_task
from xlm.serialization import safe_load
from xlm.tasks.config import load_task_config
from xlm.tasks.heads import TaskModel
from xlm.tasks.hf_export import export_hf
from xlm.tasks.inputs import collate, frame, pair, single

CASES = {  # task -> (writer, data section, HF class)
    "sentence": (write_pair_task, {"labels": ["same", "other"], "tokenized": True, "max_len": 32},
                 XLMForSequenceClassification),
    "tokens": (write_ner_task, {"max_len": 32}, XLMForTokenClassification),
    "qa": (write_qa_task, {"max_len": 64, "max_query_len": 8, "doc_stride": 32}, XLMForQuestionAnsweringSimple),
}


def finetuned(tmp_path, task):
    writer, data, _ = CASES[task]
    tiny_model(tmp_path / "model.pt")
    folder = writer(tmp_path / "task", n_train=40, n_eval=8)
    cfg = load_task_config(task, write_config(
        tmp_path / f"{task}.yaml", run={"dir": str(tmp_path / "run")}, model={"path": str(tmp_path / "model.pt")},
        data={"path": str(folder), "langs": ["en", "fr"], **data}, train={"max_steps": 3, "batch_size": 16},
        optim={"lr": 0.01, "warmup_updates": 0}))
    with one_thread():
        run_task(task, cfg)
    return tmp_path / "run" / "checkpoints" / "best.pt"


def batch():
    """A padded batch in the pair layout: two languages, continuing positions, different lengths."""
    g = torch.Generator().manual_seed(3)
    rows = [pair(frame(torch.randint(14, 54, (n,), generator=g).numpy()), 0,
                 frame(torch.randint(14, 54, (m,), generator=g).numpy()), 1) for n, m in ((3, 5), (6, 2), (1, 1))]
    rows.append(single(frame(torch.randint(14, 54, (4,), generator=g).numpy()), 1))
    return collate(rows)


@pytest.mark.parametrize("task", list(CASES))
def test_exported_head_gives_identical_logits_in_transformers(tmp_path, task):
    best = finetuned(tmp_path, task)
    ckpt = safe_load(best)
    p = xlm.load_pretrained(best)
    ours = TaskModel(p.model, ckpt["head_kind"], ckpt["n_outputs"], 0.1).eval()
    ours.proj.load_state_dict(ckpt["head"])
    out = export_hf(tmp_path / "run", tmp_path / "hf")
    hf = CASES[task][2].from_pretrained(out).eval()
    x, lengths, langs, pos = batch()
    mask = (torch.arange(x.shape[1])[None, :] < lengths[:, None]).long()
    with torch.no_grad():
        mine = ours(x, lengths, langs, pos)
        theirs = hf(input_ids=x, attention_mask=mask, langs=langs, position_ids=pos)
    if task == "sentence":
        got = theirs.logits
        assert hf.config.id2label == {0: "same", 1: "other"}
    elif task == "tokens":
        got = theirs.logits
        assert set(hf.config.id2label.values()) == {"B-LOC", "B-PER", "I-PER", "O"}
    else:
        got = torch.stack([theirs.start_logits, theirs.end_logits], -1)
    real = mask.bool() if mine.dim() == 3 else torch.ones(len(x), dtype=torch.bool)
    assert mine.abs().max() > 0.01
    assert (mine[real] - got[real]).abs().max().item() < 1e-5


def test_export_refuses_a_plain_encoder(tmp_path):
    tiny_model(tmp_path / "model.pt")
    with pytest.raises(XLMError, match="not a fine-tuned checkpoint"):
        export_hf(tmp_path / "model.pt", tmp_path / "hf")


def test_all_hidden_states_and_encode_layer(tmp_path):
    p = xlm.load_pretrained(tiny_model(tmp_path / "model.pt"))
    x, lengths, langs, pos = batch()
    with torch.no_grad():
        last = p.model(x, lengths=lengths, langs=langs, positions=pos)
        states = p.model(x, lengths=lengths, langs=langs, positions=pos, return_all=True)
    assert len(states) == p.model.n_layers + 1 and torch.equal(states[-1], last)  # unchanged when unused
    xlm.save_pretrained(p, tmp_path / "hf", format="hf")
    hf = XLMModel.from_pretrained(tmp_path / "hf").eval()
    mask = (torch.arange(x.shape[1])[None, :] < lengths[:, None])
    with torch.no_grad():
        theirs = hf(input_ids=x, attention_mask=mask.long(), langs=langs, position_ids=pos,
                    output_hidden_states=True).hidden_states
    assert len(theirs) == len(states)
    for a, b in zip(states, theirs):
        assert (a[mask] - b[mask]).abs().max().item() < 1e-5
    sents = ["w1 w2 w3", "w4"]
    by_layer = [p.encode(sents, "en", pooling="mean", layer=k) for k in range(p.model.n_layers + 1)]
    assert torch.equal(by_layer[-1], p.encode(sents, "en", pooling="mean"))
    assert torch.equal(p.encode(sents, "en", pooling="mean", layer=-1), by_layer[-1])
    assert not torch.allclose(by_layer[0], by_layer[-1])
    tok = p.encode(sents, "en", per_token=True, layer=0)
    assert torch.allclose(tok[0].states.mean(0), by_layer[0][0], atol=1e-6)
    with pytest.raises(XLMError, match="layer: 2 is out of range for a model of 1 layers"):
        p.encode(sents, "en", layer=2)
