"""Does pretraining help translation at this scale? Supervised and unsupervised en<->fr, fixed seeds.

Lample & Conneau (2019), sections 5.1-5.2, on the bundled slice. Data: the disjoint training roles
of scripts/objectives_experiment.py (``data/processed/msgcorpus_disjoint/``, made by its
``make_disjoint``): pairs = sentence ids ``[0, n/3)``, monolingual English = the English side of
``[n/3, 2n/3)``, monolingual French = the French side of ``[2n/3, n)``; no sentence in two roles.

Stages, per seed (configs/tiny.yaml's model and optimizer everywhere; the translation models by
configs/tiny_mt.yaml and configs/tiny_unmt.yaml, the same model with a decoder):

1. pretraining (encoder-only): ``mlm`` = MLM on the monolingual en and fr files, ``tlm`` = the same
   plus TLM on the pairs, ``--pretrain-steps`` steps;
2. translation models (``model.encoder_only: false``), ``--steps`` steps each:

   - ``sup-random`` / ``sup-tlm``: ``mt: [en-fr, fr-en]`` on the pairs, from random init / with
     encoder and decoder initialized from the MLM+TLM encoder of the same seed;
   - ``unsup-random`` / ``unsup-mlm``: ``ae: [en, fr]`` + ``bt: [en-fr-en, fr-en-fr]`` on the
     monolingual parts only (no pair is read in training), from random init / from the MLM encoder
     (which saw no pair either); the original's UNMT noise (word_shuffle 3, word_dropout 0.1,
     word_blank 0.1) and its AE weight schedule ``0:1,100000:0.1,300000:0`` scaled to ``--steps``
     (``0:1,S/3:0.1,S:0``);

3. scoring: the final checkpoint translates the 600 held-out test pairs in both directions with
   ``python -m xlm.translate`` (greedy unless ``--beam-size``), BLEU by ``python -m xlm.evaluate
   bleu``: sacreBLEU on detokenized text and the tokenized BLEU of multi-bleu.perl. The training text
   is lowercased and stripped of accents (the slice's preprocess.json), which a model cannot undo,
   so the references are lowercased and stripped of accents the same way and BLEU is
   case-insensitive (``--lc``); the tokenized references are the binarized test files with BPE
   removed (as the original XLM scores). A copy-the-source baseline (hypothesis = the source
   sentence, normalized the same way) is scored identically.

Rerunning skips finished stages. Results: ``RUNS/results.json`` and ``RUNS/results.md``.

    OMP_NUM_THREADS=1 python scripts/mt_experiment.py --seeds 0 1 2 --steps 400 --unsup-steps 150
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from objectives_experiment import SOURCE, make_disjoint, pretrain_cmd  # noqa: E402
from transfer_experiment import mean_sd, save_results, sh  # noqa: E402

RAW = ROOT / "data/msgcorpus/para"
DIRECTIONS = (("en", "fr"), ("fr", "en"))
SETTINGS = ("sup-random", "sup-tlm", "unsup-random", "unsup-mlm")
INIT = {"sup-random": None, "sup-tlm": "tlm", "unsup-random": None, "unsup-mlm": "mlm"}
NAMES = {"copy": "copy the source (baseline)", "sup-random": "supervised MT, random init",
         "sup-tlm": "supervised MT, MLM+TLM init", "unsup-random": "unsupervised AE+BT, random init",
         "unsup-mlm": "unsupervised AE+BT, MLM init"}


def config(setting: str) -> str:
    """configs/tiny_mt.yaml (supervised) or configs/tiny_unmt.yaml (AE + BT, the original's noise): the
    model of configs/tiny.yaml, the encoders' size."""
    return "configs/tiny_mt.yaml" if setting.startswith("sup-") else "configs/tiny_unmt.yaml"


def final_checkpoint(run: Path, steps: int) -> Path:
    return run / "checkpoints" / f"step-{steps:08d}.pt"


def mt_cmd(setting: str, seed: int, steps: int, runs: Path, data: Path, pretrain_steps: int,
           encoders: Path) -> list[str]:
    cmd = [sys.executable, "train.py", "--config", config(setting), f"run.dir={runs}/{setting}-s{seed}",
           f"data.path={data}", f"run.seed={seed}", f"train.max_steps={steps}", f"train.eval_every={steps}",
           f"train.save_every={steps}", "run.tensorboard=false", "train.eval_bleu=false",
           "train.validation_metric=_valid_en-fr_mt_ppl"]  # BLEU: scored below, on the test pairs
    if setting.startswith("unsup-"):  # the original's '0:1,100000:0.1,300000:0', scaled to the run
        cmd.append(f"objectives.lambda_ae=0:1,{steps // 3}:0.1,{steps}:0")
    if INIT[setting]:
        init = final_checkpoint(encoders / f"{INIT[setting]}-s{seed}", pretrain_steps)
        cmd += [f"init.encoder={init}", f"init.decoder={init}"]
    return cmd


def run_to_file(cmd: list[str], stdin: Path, stdout: Path, log: Path) -> None:
    """``cmd < stdin > stdout`` (stderr to ``log``), as a shell user would run it; written atomically."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    print("+", " ".join(map(str, cmd)), "<", stdin, ">", stdout, flush=True)
    tmp = stdout.with_name(stdout.name + ".tmp")
    with open(stdin, "rb") as i, open(tmp, "wb") as o, open(log, "ab") as e:
        r = subprocess.run(cmd, cwd=ROOT, env=env, stdin=i, stdout=o, stderr=e)
    if r.returncode:
        raise SystemExit(f"error: {' '.join(map(str, cmd))} failed (exit {r.returncode}); see {log}")
    os.replace(tmp, stdout)


def bleu(hyp: Path, ref: Path, tokenized: bool) -> float:
    cmd = [sys.executable, "-m", "xlm.evaluate", "bleu", "--hyp", str(hyp), "--ref", str(ref), "--lc", "--json"]
    out = subprocess.run(cmd + (["--tokenized"] if tokenized else []), cwd=ROOT, check=True, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    return float(json.loads(out.strip().splitlines()[-1])["bleu"])


def write_references(out: Path, data: Path = SOURCE) -> None:
    """``test.{lang}.txt``: the raw test side lowercased and stripped of accents (as the training
    text); ``test.{lang}.tok``: the binarized test side with BPE removed (the original's tokenized
    reference). Both are also the copy-the-source hypotheses of the other direction."""
    from xlm.data.dictionary import Dictionary
    from xlm.data.indexed import IndexedDataset
    from xlm.data.text.normalize import lowercase_and_remove_accent

    settings = json.loads((data / "preprocess.json").read_text())
    if not settings.get("lower_remove_accent"):
        raise SystemExit(f"error: {data}/preprocess.json: expected lowercased text (lower_remove_accent: true); "
                         "the references and --lc here assume it")
    out.mkdir(parents=True, exist_ok=True)
    dico = Dictionary.read_vocab(data / "vocab")
    for lang in ("en", "fr"):
        raw = (RAW / f"test.en-fr.{lang}").read_text(encoding="utf-8")
        ds = IndexedDataset(data / f"test.en-fr.{lang}")
        tok = [re.sub(r"@@ |@@$", "", " ".join(dico.decode(ds.tokens[ds.offsets[i]: ds.offsets[i + 1] - 1])))
               for i in range(len(ds))]
        norm = lowercase_and_remove_accent(raw).split("\n")[: len(tok)]
        if len(norm) != len(tok):
            raise SystemExit(f"error: {RAW}/test.en-fr.{lang} has {len(norm)} lines, the binarized file {len(tok)}")
        (out / f"test.{lang}.txt").write_text("\n".join(norm) + "\n", encoding="utf-8")
        (out / f"test.{lang}.tok").write_text("\n".join(tok) + "\n", encoding="utf-8")


def score(model: Path | None, out: Path, refs: Path, beam_size: int) -> dict[str, dict[str, float]]:
    """BLEU of ``model`` (None: copy the source) on the test pairs, both directions."""
    out.mkdir(parents=True, exist_ok=True)
    res: dict[str, dict[str, float]] = {}
    for src, tgt in DIRECTIONS:
        entry: dict[str, float] = {}
        for tokenized in (False, True):
            ext = "tok" if tokenized else "txt"
            hyp = refs / f"test.{src}.{ext}" if model is None else out / f"test.{src}-{tgt}.{ext}"
            if model is not None and not hyp.exists():
                t0 = time.time()
                cmd = [sys.executable, "-m", "xlm.translate", "--model", str(model), "--src-lang", src,
                       "--tgt-lang", tgt, "--beam-size", str(beam_size), "--batch-size", "64"]
                run_to_file(cmd + (["--no-detokenize"] if tokenized else []), RAW / f"test.en-fr.{src}", hyp,
                            out / "translate.log")
                entry[f"decode_s_{ext}"] = round(time.time() - t0, 1)
            entry["tokenized" if tokenized else "sacrebleu"] = bleu(hyp, refs / f"test.{tgt}.{ext}", tokenized)
        res[f"{src}-{tgt}"] = entry
    return res


def training_seconds(run: Path) -> float | None:
    """The trainer's own "done at step N (X s of training)" figure, if logged."""
    log = run / "train.log"
    m = re.findall(r"\(([\d.]+) s of training\)", log.read_text()) if log.exists() else []
    return float(m[-1]) if m else None


def test_metrics(run: Path, steps: int) -> dict[str, float]:
    """The trainer's final teacher-forced ``test_{l1}-{l2}_mt_ppl`` / ``_mt_acc`` (metrics.jsonl)."""
    for line in reversed((run / "metrics.jsonl").read_text().splitlines()):
        m = json.loads(line)
        if m.get("kind") == "eval" and m.get("step") == steps:
            return {k: v for k, v in m.items() if k.startswith("test_") and "_mt_" in k}
    raise SystemExit(f"error: {run}/metrics.jsonl: no evaluation at step {steps}")


def tables(results: dict, seeds: list[int], beam_size: int) -> str:
    some = {k: [s for s in seeds if "bleu" in results.get(f"{k}-s{s}", {})] for k in SETTINGS}
    steps = {k: sorted({results[f"{k}-s{s}"]["steps"] for s in some[k]}) for k in SETTINGS}
    decoding = "greedy" if beam_size == 1 else f"beam {beam_size}"
    lines = [f"BLEU on the 600 test pairs ({decoding}; case-insensitive, references lowercased and stripped of "
             "accents as the training text); mean ± sd over the seeds listed", "",
             "| model | steps | seeds | en→fr | fr→en | en→fr tokenized | fr→en tokenized |",
             "|---|---|---|---|---|---|---|"]
    c = results.get("copy", {}).get("bleu")
    if c:
        lines.append(f"| {NAMES['copy']} | – | – | {c['en-fr']['sacrebleu']:.1f} | {c['fr-en']['sacrebleu']:.1f} | "
                     f"{c['en-fr']['tokenized']:.1f} | {c['fr-en']['tokenized']:.1f} |")
    for k in SETTINGS:
        if not some[k]:
            lines.append(f"| {NAMES[k]} | – | – | not run | | | |")
            continue
        bs = [results[f"{k}-s{s}"]["bleu"] for s in some[k]]
        cells = [mean_sd([b[d][m] for b in bs]) for m in ("sacrebleu", "tokenized") for d in ("en-fr", "fr-en")]
        lines.append(f"| {NAMES[k]} | {','.join(map(str, steps[k]))} | {','.join(map(str, some[k]))} | "
                     + " | ".join(cells) + " |")
    lines += ["", "Per seed (sacreBLEU, tokenized BLEU in brackets; the trainer's teacher-forced test perplexity; "
              "training seconds on the shared 2-core CPU):", "",
              "| model | seed | en→fr | fr→en | ppl en→fr | ppl fr→en | train s |", "|---|---|---|---|---|---|---|"]
    for k in SETTINGS:
        for s in some[k]:
            r = results[f"{k}-s{s}"]
            b = r["bleu"]
            lines.append(f"| {NAMES[k]} | {s} | " + " | ".join(
                f"{b[d]['sacrebleu']:.2f} ({b[d]['tokenized']:.2f})" for d in ("en-fr", "fr-en")) + " | "
                + " | ".join(f"{r['test_mt'][f'test_{d}_mt_ppl']:.1f}" if "test_mt" in r else ""
                             for d in ("en-fr", "fr-en"))
                + f" | {r.get('train_s') or ''} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=400, help="training steps of each supervised translation model")
    ap.add_argument("--unsup-steps", type=int, default=0, help="steps of each unsupervised one (0: --steps)")
    ap.add_argument("--pretrain-steps", type=int, default=1000, help="steps of each pretrained encoder")
    ap.add_argument("--beam-size", type=int, default=1, help="1: greedy decoding")
    ap.add_argument("--runs", default="runs/mt")
    ap.add_argument("--encoders", default="", help="folder of the pretrained encoders (default: --runs)")
    ap.add_argument("--stages", nargs="+", choices=("pretrain", "mt"), default=["pretrain", "mt"],
                    help="pretrain: the encoders only; mt: the translation models and their scores")
    ap.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS))
    args = ap.parse_args(argv)
    runs = ROOT / args.runs
    runs.mkdir(parents=True, exist_ok=True)
    encoders = ROOT / (args.encoders or args.runs)
    if not (SOURCE / "vocab").exists():
        sh([sys.executable, "preprocess.py", "run", "configs/data/msgcorpus_slice.yaml"])
    data = make_disjoint()
    results_path = runs / "results.json"
    if "pretrain" in args.stages:
        for seed in args.seeds:
            for kind in ("tlm", "mlm"):
                if not final_checkpoint(encoders / f"{kind}-s{seed}", args.pretrain_steps).exists():
                    sh(pretrain_cmd(kind, seed, args.pretrain_steps, encoders, data), encoders / f"{kind}-s{seed}.out")
                save_results(results_path, {f"{kind}-s{seed}": {
                    "steps": args.pretrain_steps, "train_s": training_seconds(encoders / f"{kind}-s{seed}")}})
    if "mt" not in args.stages:
        return
    refs = runs / "refs"
    if not (refs / "test.fr.tok").exists():
        write_references(refs)
    if "bleu" not in json.loads(results_path.read_text()).get("copy", {}):
        save_results(results_path, {"copy": {"bleu": score(None, runs / "copy", refs, args.beam_size)}})
    for seed in args.seeds:  # seed by seed: a partial run still gives complete rows
        for setting in args.settings:
            key, run = f"{setting}-s{seed}", runs / f"{setting}-s{seed}"
            steps = args.unsup_steps if setting.startswith("unsup-") and args.unsup_steps else args.steps
            entry = json.loads(results_path.read_text()).get(key, {})
            if entry.get("steps") == steps and "bleu" in entry and "test_mt" in entry:
                continue
            final = final_checkpoint(run, steps)
            if not final.exists():
                sh(mt_cmd(setting, seed, steps, runs, data, args.pretrain_steps, encoders), runs / f"{key}.out")
            entry = {"steps": steps, "train_s": training_seconds(run), "beam_size": args.beam_size,
                     "test_mt": test_metrics(run, steps), "bleu": score(final, run / "test", refs, args.beam_size)}
            save_results(results_path, {key: entry})
            print(key, json.dumps(entry["bleu"]), flush=True)
            table = tables(json.loads(results_path.read_text()), args.seeds, args.beam_size)
            (runs / "results.md").write_text(table, encoding="utf-8")
    table = tables(json.loads(results_path.read_text()), args.seeds, args.beam_size)
    (runs / "results.md").write_text(table, encoding="utf-8")
    print(table, flush=True)


if __name__ == "__main__":
    main()
