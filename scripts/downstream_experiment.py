"""The downstream experiment of docs/downstream.md, end to end, with fixed seeds.

For each seed: pretrain configs/tiny_4lang.yaml (en, fr, de, zh) for the same number of steps with
MLM only (``objectives.mlm=[de,en,fr,zh]``) and with MLM+TLM (plus the en-fr and en-zh pairs), and
save an untrained model of the same config (the weights the trainer starts from); then for the
three models

1. fine-tune the derived concept-tagging task (scripts/make_concept_task.py) on English and test
   zero-shot on French, German and Chinese (configs/finetune/msgcorpus_concepts.yaml), and train
   only the head on the frozen encoder (``train.finetune_layers=1:0 head.lr=5e-3``, a probe of
   what pretraining put in the representations);
2. retrieval of the English translation of the held-out fr and zh test sentences
   (configs/finetune/msgcorpus_retrieval.yaml) and BUCC-style mining
   (scripts/make_bucc_task.py, configs/finetune/msgcorpus_bucc.yaml).

Next to them, two rule-based taggers built from the English training data: ``exact`` tags a word
with the tag it had most often in training, ``prefix`` also tags an unseen word (4+ letters) with
the tag of a tagged training word sharing its first 4 letters (cognates: commande, Passwort).
Every command is run through ``python -m xlm.finetune``; finished stages are skipped on a rerun.
Results: ``RUNS/results.json`` and ``RUNS/results.md``.

    OMP_NUM_THREADS=1 python scripts/downstream_experiment.py --seeds 0 1 --steps 1000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OBJECTIVES = {"mlm": "[de,en,fr,zh]", "tlm": "[de,en,fr,zh,en-fr,en-zh]"}
MODELS = ("random", "mlm", "tlm")
NAMES = {"random": "untrained encoder", "mlm": "MLM (de, en, fr, zh)", "tlm": "MLM + TLM (+ en-fr, en-zh)"}
LANGS = ("en", "fr", "de", "zh")
CONCEPTS = ROOT / "data/processed/msgcorpus_concepts"


def sh(cmd: list[str], log: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    print("+", " ".join(cmd), flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as f:
        r = subprocess.run(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode:
        raise SystemExit(f"error: {' '.join(cmd)} failed (exit {r.returncode}); see {log}")


def pretrain_cmd(kind: str, seed: int, steps: int, runs: Path) -> list[str]:
    return [sys.executable, "train.py", "--config", "configs/tiny_4lang.yaml", f"run.dir={runs}/{kind}-s{seed}",
            f"run.seed={seed}", f"objectives.mlm={OBJECTIVES[kind]}", f"train.max_steps={steps}",
            f"train.eval_every={steps // 4}", f"train.save_every={steps // 4}"]


def save_random_init(seed: int, path: Path) -> None:
    """The untrained model of configs/tiny_4lang.yaml, initialised exactly as the trainer does for this seed."""
    import torch

    from xlm.checkpoint import model_payload
    from xlm.config import load_config
    from xlm.data.dictionary import Dictionary
    from xlm.data.sampling import torch_seed
    from xlm.model.transformer import TransformerModel
    from xlm.serialization import atomic_save

    cfg = load_config(ROOT / "configs/tiny_4lang.yaml", [f"run.seed={seed}"])
    data = ROOT / cfg.data.path
    dico = Dictionary.read_vocab(data / "vocab")
    torch.manual_seed(torch_seed(cfg.run.seed))
    model = TransformerModel(cfg.model, len(dico), len(cfg.data.langs))
    lang2id = {lang: i for i, lang in enumerate(cfg.data.langs)}
    payload = model_payload(model, cfg.model, lang2id, dico, cfg, (data / "codes").read_text("utf-8"), 0)
    atomic_save({**payload, "lowercase": True}, path)  # configs/data/msgcorpus_4lang.yaml lowercases


def model_path(kind: str, seed: int, runs: Path) -> Path:
    return runs / f"random-s{seed}.pt" if kind == "random" else runs / f"{kind}-s{seed}" / "checkpoints" / "best.pt"


EVALUATIONS = [  # name, task, config, overrides
    ("concepts", "tokens", "msgcorpus_concepts", []),
    ("probe", "tokens", "msgcorpus_concepts", ["train.finetune_layers=1:0", "head.lr=5e-3"]),  # frozen encoder
    ("retrieval", "retrieval", "msgcorpus_retrieval", []),
    ("mining", "mining", "msgcorpus_bucc", []),
]


def evaluations(kind: str, seed: int, runs: Path) -> list[tuple[str, list[str], Path]]:
    """(name, command, run folder) of each evaluation of one model."""
    model = model_path(kind, seed, runs)
    out = []
    for name, task, config, extra in EVALUATIONS:
        run = runs / f"{name}-{kind}-s{seed}"
        out.append((name, [sys.executable, "-m", "xlm.finetune", task, "--config", f"configs/finetune/{config}.yaml",
                           f"model.path={model}", f"run.dir={run}", f"run.seed={seed}", *extra], run))
    return out


# -- rule-based taggers from the English training data ---------------------------------------------
def rule_baselines() -> dict[str, dict[str, float]]:
    from xlm.data.tokenize import lowercase_and_remove_accent as norm
    from xlm.tasks.formats.tokens import read_conll
    from xlm.tasks.metrics import entity_scores

    seen: dict[str, Counter] = defaultdict(Counter)
    for s in read_conll(CONCEPTS / "train.en.conll"):
        for w, t in zip(s.words, s.labels):
            seen[norm(w)][t] += 1
    exact = {w: c.most_common(1)[0][0] for w, c in seen.items()}
    prefixes: dict[str, str] = {}
    for w, t in sorted(exact.items()):
        if t != "O" and len(w) >= 4:
            prefixes.setdefault(w[:4], "B-" + t[2:])
    out: dict[str, dict[str, float]] = {"exact": {}, "prefix": {}}
    for lang in LANGS:
        sents = read_conll(CONCEPTS / f"test.{lang}.conll")
        gold = [s.labels for s in sents]
        for rule in out:
            pred = []
            for s in sents:
                tags = []
                for w in map(norm, s.words):
                    t = exact.get(w, "O")
                    if rule == "prefix" and w not in exact and len(w) >= 4:
                        t = prefixes.get(w[:4], "O")
                    tags.append(t)
                pred.append(tags)
            out[rule][lang] = entity_scores(gold, pred)["f1"]
    return out


# -- tables ---------------------------------------------------------------------------------------------
def mean_sd(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def table(results: dict, seeds: list[int]) -> str:
    done = [s for s in seeds if all(f"{k}-s{s}" in results for k in MODELS)]
    lines = [f"Concept tagging, entity F1 (seqeval, default mode), trained on English only, zero-shot on fr, de, zh; "
             f"seeds {done} (mean ± sd)", "",
             "| model | protocol | en | fr | de | zh | avg | zero-shot avg (fr, de, zh) |", "|---" * 8 + "|"]
    for rule, name in (("exact", "rule: a word gets its English training tag"),
                       ("prefix", "rule: + an unseen word the tag of a word with its first 4 letters")):
        f1 = results["rules"][rule]
        cells = [f"{f1[lg]:.1f}" for lg in LANGS]
        cells += [f"{statistics.mean(f1.values()):.1f}", f"{statistics.mean(f1[lg] for lg in LANGS[1:]):.1f}"]
        lines.append(f"| {name} | – | " + " | ".join(cells) + " |")
    for kind in MODELS:
        for protocol, label in (("concepts", "fine-tuned"), ("probe", "frozen encoder")):
            rs = [results[f"{kind}-s{s}"][protocol] for s in done]
            cells = [mean_sd([r[f"test_{lg}_f1"] for r in rs]) for lg in LANGS]
            cells.append(mean_sd([r["test_f1"] for r in rs]))
            cells.append(mean_sd([statistics.mean(r[f"test_{lg}_f1"] for lg in LANGS[1:]) for r in rs]))
            lines.append(f"| {NAMES[kind]} | {label} | " + " | ".join(cells) + " |")
    lines += ["", f"The same encoders before fine-tuning: retrieval accuracy xx→en (%) and BUCC-style mining F1; seeds "
              f"{done}", "", "| model | retrieval fr→en | retrieval zh→en | mining F1 fr-en | mining F1 zh-en |",
              "|---" * 5 + "|"]
    for kind in MODELS:
        rs = [results[f"{kind}-s{s}"] for s in done]
        cells = [mean_sd([r["retrieval"][f"test_{lg}_acc"] for r in rs]) for lg in ("fr", "zh")]
        cells += [mean_sd([r["mining"][f"test_{lg}_f1"] for r in rs]) for lg in ("fr", "zh")]
        lines.append(f"| {NAMES[kind]} | " + " | ".join(cells) + " |")
    lines += ["", "Per seed (concept F1 en / fr / de / zh, fine-tuned; frozen encoder):", ""]
    for kind in MODELS:
        for s in done:
            c, p = (results[f"{kind}-s{s}"][k] for k in ("concepts", "probe"))
            lines.append(f"- {NAMES[kind]}, seed {s}: " + " / ".join(f"{c[f'test_{lg}_f1']:.1f}" for lg in LANGS)
                         + "; " + " / ".join(f"{p[f'test_{lg}_f1']:.1f}" for lg in LANGS))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--steps", type=int, default=1000, help="pretraining steps of each run")
    ap.add_argument("--runs", default="runs/downstream")
    ap.add_argument("--jobs", type=int, default=2, help="runs in parallel")
    args = ap.parse_args(argv)
    runs = ROOT / args.runs
    runs.mkdir(parents=True, exist_ok=True)
    if not (ROOT / "data/processed/msgcorpus_4lang/vocab").exists():
        sh([sys.executable, "preprocess.py", "run", "configs/data/msgcorpus_4lang.yaml"], runs / "preprocess.out")
    if not (CONCEPTS / "test.zh.conll").exists():
        sh([sys.executable, "scripts/make_concept_task.py", "--out", str(CONCEPTS)], runs / "concepts.out")
    if not (ROOT / "data/processed/msgcorpus_bucc/zh-en.test.gold").exists():
        sh([sys.executable, "scripts/make_bucc_task.py"], runs / "bucc.out")
    jobs = [(k, s) for s in args.seeds for k in OBJECTIVES
            if not (runs / f"{k}-s{s}" / "checkpoints" / f"step-{args.steps:08d}.pt").exists()]
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(lambda j: sh(pretrain_cmd(j[0], j[1], args.steps, runs), runs / f"{j[0]}-s{j[1]}.out"), jobs))
    for seed in args.seeds:
        if not (runs / f"random-s{seed}.pt").exists():
            save_random_init(seed, runs / f"random-s{seed}.pt")
    todo = [(name, cmd, run) for s in args.seeds for k in MODELS for name, cmd, run in evaluations(k, s, runs)
            if not (run / "results.json").exists()]
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(lambda t: sh(t[1], t[2].with_suffix(".out")), todo))
    results = {"rules": rule_baselines()}
    for seed in args.seeds:
        for kind in MODELS:
            results[f"{kind}-s{seed}"] = {name: json.loads((run / "results.json").read_text())["metrics"]
                                          for name, _, run in evaluations(kind, seed, runs)}
    (runs / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    text = table(results, args.seeds)
    (runs / "results.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
