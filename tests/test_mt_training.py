"""Translation objectives through the trainer: AE, MT, BT on an encoder-decoder (issue 15, item 2).

The synthetic folder's pairs map every word to the next id (``fr = en + 1``), so supervised MT is
learnable in seconds; its monolingual files feed AE and BT.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from training_data import synthetic_folder, tiny_config

from xlm.config import load_config
from xlm.errors import XLMError
from xlm.evaluation import metric_names
from xlm.model.decoder import EncoderDecoder
from xlm.objectives import Task, TaskDrawer, make_batch, parse_tasks, prepare
from xlm.train.loss import LossModule
from xlm.trainer import Trainer

ENC_DEC = ["model.encoder_only=false", "objectives.mlm=[]", "train.eval_at_start=false"]
UNSUPERVISED = [*ENC_DEC, "objectives.ae=[en,fr]", "objectives.bt=[en-fr-en,fr-en-fr]", "objectives.word_shuffle=3",
                "objectives.word_dropout=0.1", "objectives.word_blank=0.1",
                "train.validation_metric=_valid_fr-en_mt_ppl"]


pytestmark = pytest.mark.usefixtures("single_thread")  # (tests/conftest.py)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthetic_folder(tmp_path_factory.mktemp("mt") / "data", n_train=400)


def test_supervised_mt_learns_the_mapping_and_reports_the_original_metrics(data, tmp_path):
    cfg = tiny_config(data, tmp_path / "mt", [*ENC_DEC, "objectives.mt=[en-fr,fr-en]", "model.emb_dim=64",
                                               "model.dropout=0", "model.attention_dropout=0", "train.max_steps=400",
                                               "train.eval_every=400", "train.save_every=400", "train.eval_bleu=true",
                                               "train.validation_metric=valid_en-fr_mt_bleu"])
    trainer = Trainer(cfg)
    assert isinstance(trainer.model, EncoderDecoder)
    metrics = trainer.train()
    for split in ("valid", "test"):
        for d in ("en-fr", "fr-en"):
            assert {f"{split}_{d}_mt_ppl", f"{split}_{d}_mt_acc", f"{split}_{d}_mt_bleu"} <= metrics.keys()
    # measured: BLEU 92-96, acc 97-98 after 400 steps (13 s); untrained: BLEU 0
    assert metrics["valid_en-fr_mt_bleu"] > 70 and metrics["valid_fr-en_mt_bleu"] > 70, metrics
    assert metrics["valid_en-fr_mt_acc"] > 90
    assert (tmp_path / "mt" / "checkpoints" / "best.pt").is_file()


def test_bt_generates_without_gradients_in_eval_mode(data, tmp_path):
    trainer = Trainer(tiny_config(data, tmp_path / "bt", UNSUPERVISED))
    model = trainer.model.train()
    task = Task("bt", "en", "fr")
    raw = trainer.data.sources[task].next()
    batch = make_batch(task, raw, trainer.train_masker, np.random.default_rng(0))
    assert batch.source is None and batch.pending is not None
    seen = []
    hook = model.encoder.register_forward_hook(lambda m, i, o: seen.append((torch.is_grad_enabled(), m.training)))
    try:
        batch = prepare(model, batch)
    finally:
        hook.remove()
    assert seen and all(not grad and not training for grad, training in seen)  # no graph, no dropout
    assert model.training  # restored
    assert batch.pending is None and batch.source is not None and not batch.source.x.requires_grad
    assert all(p.grad is None for p in model.parameters())
    assert int(batch.source.langs) == trainer.data.lang2id["fr"] and int(batch.langs) == trainer.data.lang2id["en"]
    # the synthetic source is framed </s> .. </s> and as long as its lengths say
    src, n = batch.source.x, batch.source.lengths
    assert (src[:, 0] == 1).all() and (src[torch.arange(len(n)), n - 1] == 1).all()
    # training on it: gradients reach both sides, none flows back into the generation
    loss = LossModule(model)(batch, None, None)
    loss.backward()
    assert model.decoder.encoder_attn[0].q_lin.weight.grad is not None
    assert model.encoder.embeddings.weight.grad is not None


def test_resume_with_ae_and_bt_is_bit_exact(data, tmp_path):
    common = [*UNSUPERVISED, "objectives.mt=[en-fr]", "train.eval_every=100", "train.save_every=4", "run.log_every=2"]
    straight = Trainer(tiny_config(data, tmp_path / "a", [*common, "train.max_steps=8"]))
    straight.train()
    first = Trainer(tiny_config(data, tmp_path / "b", [*common, "train.max_steps=4"]))
    first.train()
    resumed = Trainer(tiny_config(data, tmp_path / "b", [*common, "train.max_steps=8"]))
    resumed.train()
    assert resumed.state.step == 8
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_ae_and_bt_run_every_entry_each_step_and_lambda_schedules_apply():
    cfg = load_config_dict({"ae": ["en", "fr"], "bt": ["en-fr-en", "fr-en-fr"], "mt": ["en-fr"],
                            "lambda_ae": "0:1,10:0.1,20:0", "lambda_bt": "0:0,5:0,6:1"})
    tasks = parse_tasks(cfg)
    drawer = TaskDrawer.from_config(cfg, {t: 10 for t in tasks}, -1)
    for step in (0, 5, 10, 15, 20):
        drawn = drawer.draw(step, np.random.default_rng(step))
        names = sorted(t.name for t, _ in drawn)
        expected = ["MT-en-fr"] + (["AE-en", "AE-fr"] if step < 20 else []) + (
            ["BT-en-fr-en", "BT-fr-en-fr"] if step > 5 else [])
        assert names == sorted(expected), step
        weights = {t.objective: w for t, w in drawn}
        if step < 20:
            assert weights["ae"] == pytest.approx({0: 1, 5: 0.55, 10: 0.1, 15: 0.05}[step])


def load_config_dict(objectives):
    from xlm.config import ObjectivesConfig

    return ObjectivesConfig(**objectives)


def test_metric_names_follow_the_original():
    tasks = parse_tasks(load_config_dict({"ae": ["en"], "mt": ["en-fr"], "bt": ["en-fr-en", "fr-en-fr"]}))
    assert metric_names(tasks, ("valid",), bleu=True) == [
        "valid_en-fr_mt_ppl", "valid_en-fr_mt_acc", "valid_en-fr_mt_bleu",  # MT en-fr and BT fr-en-fr
        "valid_fr-en_mt_ppl", "valid_fr-en_mt_acc", "valid_fr-en_mt_bleu"]  # BT en-fr-en


def test_ae_corrupts_the_source_only_in_training(data, tmp_path):
    trainer = Trainer(tiny_config(data, tmp_path / "ae", UNSUPERVISED))
    task = Task("ae", "en")
    raw = trainer.data.sources[task].next()
    noisy = make_batch(task, raw, trainer.train_masker, np.random.default_rng(0))
    clean = make_batch(task, raw, trainer.train_masker, np.random.default_rng(0), train=False)
    assert torch.equal(noisy.x, torch.from_numpy(raw.x)) and torch.equal(clean.source.x, clean.x)
    assert not torch.equal(noisy.source.x[:, : noisy.x.shape[1]], noisy.x[:, : noisy.source.x.shape[1]])
    # targets: every token after the first, predicted from the previous one
    n = noisy.lengths
    assert noisy.targets.numel() == int((n - 1).sum())


def test_init_encoder_and_decoder_from_a_pretrained_encoder(data, tmp_path):
    pre = Trainer(tiny_config(data, tmp_path / "pre", ["train.max_steps=4", "train.eval_at_start=false"]))
    pre.train()
    cfg = tiny_config(data, tmp_path / "mt", [*ENC_DEC, "objectives.mt=[en-fr]", "train.max_steps=1",
                                               f"init.encoder={tmp_path / 'pre'}", "train.eval_every=1",
                                               "train.validation_metric=_valid_en-fr_mt_ppl"])
    trainer = Trainer(cfg)
    lines = trainer.initialize()
    assert any("cross" in line.lower() for line in lines), lines
    for side in (trainer.model.encoder, trainer.model.decoder):
        assert torch.equal(side.embeddings.weight, pre.model.embeddings.weight)
        assert torch.equal(side.attentions[0].q_lin.weight, pre.model.attentions[0].q_lin.weight)


@pytest.mark.parametrize("overrides, message", [
    (["objectives.mt=[en-fr]"], "objectives.mt: trains a decoder; set model.encoder_only: false"),
    ([*ENC_DEC, "objectives.bt=[en-fr]"], "objectives.bt: 'en-fr' is not a round trip 'l1-l2-l1'"),
    ([*ENC_DEC, "objectives.bt=[en-fr-fr]"], "objectives.bt: 'en-fr-fr' must return to its first language"),
    ([*ENC_DEC, "objectives.ae=[en-fr]"], "objectives.ae: 'en-fr' is not a language"),
    ([*ENC_DEC, "objectives.mt=[en-fr]", "objectives.word_blank=0.1"],
     "objectives.word_blank: only used by objectives.ae"),
    ([*ENC_DEC, "objectives.mt=[en-fr]", "objectives.camlm=[en-fr]"], "objectives.camlm: not with an encoder-decoder"),
    (["train.eval_bleu=true"], "train.eval_bleu: needs objectives.mt or objectives.bt"),
    ([*ENC_DEC, "objectives.mt=[en-fr]", "train.eval_bleu=true", "train.parallelism=fsdp"],
     "train.eval_bleu: decoding runs outside the sharded forward"),
])
def test_config_errors_name_the_key(data, tmp_path, overrides, message):
    with pytest.raises(XLMError, match=message.replace("(", r"\(").replace(")", r"\)")):
        tiny_config(data, tmp_path / "bad", overrides)


def test_mt_checkpoint_is_a_translation_model(data, tmp_path):
    from xlm.generation import translate_ids
    from xlm.pretrained import load_pretrained

    cfg = tiny_config(data, tmp_path / "run", [*ENC_DEC, "objectives.mt=[en-fr]", "train.max_steps=2",
                                               "train.validation_metric=_valid_en-fr_mt_ppl"])
    Trainer(cfg).train()
    p = load_pretrained(tmp_path / "run")
    assert isinstance(p.model, EncoderDecoder) and p.lang2id == {"en": 0, "fr": 1}
    src = torch.tensor([[1, 20, 21, 1]])
    out = translate_ids(p.model, src, torch.tensor([4]), 0, 1, max_len=8)
    assert len(out.tokens) == 1




def test_two_ranks_train_and_evaluate_an_encoder_decoder(data, tmp_path):
    """DDP over two torchrun ranks (gloo): encoder objectives and AE/MT/BT together, accumulation, BLEU
    gathered from both ranks' halves of the evaluation (one figure, from every sentence)."""
    import json
    import subprocess
    import sys

    from training_data import ROOT, SUBPROCESS_ENV, tiny_config_dict, write_config

    cfg = tiny_config_dict(data, tmp_path / "run")
    cfg["model"]["encoder_only"] = False
    cfg["objectives"] = {"mlm": ["en"], "mt": ["en-fr"], "ae": ["fr"], "bt": ["en-fr-en"], "word_dropout": 0.1}
    cfg["train"].update(max_steps=4, eval_every=4, save_every=4, accumulate_gradients=2, eval_bleu=True,
                        eval_at_start=False, validation_metric="valid_fr-en_mt_bleu", eval_max_sentences=20)
    path = write_config(tmp_path / "run.yaml", cfg)
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                          str(ROOT / "train.py"), "--config", str(path)], env=SUBPROCESS_ENV, capture_output=True,
                         text=True, timeout=240)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    evals = [r for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines())
             if r["kind"] == "eval"]
    assert evals[-1]["step"] == 4
    assert {"valid_en-fr_mt_bleu", "valid_fr-en_mt_ppl", "valid_en_mlm_ppl"} <= evals[-1].keys()
    assert (tmp_path / "run" / "checkpoints" / "step-00000004.pt").is_file()
    # one process evaluating the same checkpoint: the same figures
    alone = Trainer(load_config(path, ["train.eval_only=true"])).train()
    for name in ("valid_en-fr_mt_bleu", "test_fr-en_mt_bleu"):
        assert alone[name] == pytest.approx(evals[-1][name], abs=1e-9), name
    assert alone["valid_fr-en_mt_ppl"] == pytest.approx(evals[-1]["valid_fr-en_mt_ppl"], rel=1e-5)


def test_a_perplexity_is_never_maximized(data, tmp_path):
    """A metric copied without its '_' would keep the worst model as best.pt: refused, with the spelling."""
    cfg = tiny_config(data, tmp_path / "vm", [*ENC_DEC, "objectives.mt=[en-fr]",
                                              "train.validation_metric=valid_en-fr_mt_ppl"])
    with pytest.raises(XLMError, match="would be maximized.*write '_valid_en-fr_mt_ppl'"):
        Trainer(cfg)
    with pytest.raises(XLMError, match="choose one of _valid_en-fr_mt_ppl, valid_en-fr_mt_acc"):
        Trainer(tiny_config(data, tmp_path / "vm2", [*ENC_DEC, "objectives.mt=[en-fr]",
                                                     "train.validation_metric=valid_mt_bleu"]))
