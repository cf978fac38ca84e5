"""The cross-lingual transfer experiment of docs/transfer.md, end to end, with fixed seeds.

For each seed: pretrain configs/tiny.yaml twice for the same number of steps, with MLM only
(``objectives.mlm=[en,fr]``) and with MLM+TLM (``[en,fr,en-fr]``), and save an untrained model of the
same config (the weights the trainer starts from: same seed, same initialisation); then for the
three models

1. en->fr and fr->en retrieval P@1 on the 600 held-out pairs ``data/msgcorpus/para/test.en-fr.*``
   (mean pooling, cosine, as ``python -m xlm.evaluate retrieval``; first-token pooling and the margin
   score are recorded too), and
2. fine-tuning on the derived pair task (scripts/make_pair_task.py) in English only, tested
   zero-shot in French (configs/finetune/msgcorpus_pairs.yaml).

Rerunning skips finished stages. Results: ``RUNS/results.json`` and the markdown tables in
``RUNS/results.md``.

    OMP_NUM_THREADS=1 python scripts/transfer_experiment.py --seeds 0 1 --steps 1000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OBJECTIVES = {"mlm": "[en,fr]", "tlm": "[en,fr,en-fr]"}
MODELS = ("random", "mlm", "tlm")
NAMES = {"random": "random init", "mlm": "MLM (en, fr)", "tlm": "MLM + TLM (en, fr, en-fr)"}


def sh(cmd: list[str], log: Path | None = None) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    print("+", " ".join(cmd), flush=True)
    if log is None:
        subprocess.run(cmd, cwd=ROOT, env=env, check=True)
        return
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as f:
        r = subprocess.run(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode:
        raise SystemExit(f"error: {' '.join(cmd)} failed (exit {r.returncode}); see {log}")


def pretrain_cmd(kind: str, seed: int, steps: int, runs: Path) -> list[str]:
    return [sys.executable, "train.py", "--config", "configs/tiny.yaml", f"run.dir={runs}/{kind}-s{seed}",
            f"run.seed={seed}", f"objectives.mlm={OBJECTIVES[kind]}", f"train.max_steps={steps}",
            f"train.eval_every={steps // 4}", f"train.save_every={steps // 4}", "run.tensorboard=false"]


def save_random_init(seed: int, path: Path) -> None:
    """The untrained model of configs/tiny.yaml: initialised exactly as the trainer does for this seed."""
    import torch

    from xlm.checkpoint import model_payload
    from xlm.config import load_config
    from xlm.data.dictionary import Dictionary
    from xlm.data.sampling import torch_seed
    from xlm.model.transformer import TransformerModel
    from xlm.serialization import atomic_save

    cfg = load_config(ROOT / "configs/tiny.yaml", [f"run.seed={seed}"])
    data = ROOT / cfg.data.path
    dico = Dictionary.read_vocab(data / "vocab")
    codes = (data / "codes").read_text(encoding="utf-8")
    torch.manual_seed(torch_seed(cfg.run.seed))
    model = TransformerModel(cfg.model, len(dico), len(cfg.data.langs))
    lang2id = {lang: i for i, lang in enumerate(cfg.data.langs)}
    atomic_save(model_payload(model, cfg.model, lang2id, dico, cfg, codes, 0), path)


def retrieval_scores(model_path: Path, lowercase: bool) -> dict[str, float]:
    import torch

    from xlm.pretrained import load_pretrained
    from xlm.retrieval import precision_at_1, read_lines

    torch.set_num_threads(1)
    p = load_pretrained(model_path)
    p.lowercase = lowercase  # trainer checkpoints do not record it yet (see docs/transfer.md)
    en = read_lines(ROOT / "data/msgcorpus/para/test.en-fr.en")
    fr = read_lines(ROOT / "data/msgcorpus/para/test.en-fr.fr")
    out: dict[str, float] = {"n": len(en)}
    for pooling in ("mean", "first"):
        e, f = p.encode(en, "en", pooling=pooling, batch_size=64), p.encode(fr, "fr", pooling=pooling, batch_size=64)
        for margin in (False, True):
            r = precision_at_1(e, f, margin)
            tag = f"{pooling}{'_margin' if margin else ''}"
            out[f"en_fr_{tag}"], out[f"fr_en_{tag}"] = r.src_to_tgt, r.tgt_to_src
    return out


def save_results(path: Path, new: dict) -> None:
    """Merge ``new`` into the results file (instances for different seeds may run side by side)."""
    current = json.loads(path.read_text()) if path.exists() else {}
    current.update(new)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(current, indent=2) + "\n")
    os.replace(tmp, path)


def model_path(kind: str, seed: int, runs: Path) -> Path:
    return runs / f"random-s{seed}.pt" if kind == "random" else runs / f"{kind}-s{seed}" / "checkpoints" / "best.pt"


def mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def tables(results: dict, seeds: list[int]) -> str:
    """Markdown tables; each uses the seeds whose runs have that result."""
    rs_seeds = [s for s in seeds if all("retrieval" in results.get(f"{k}-s{s}", {}) for k in MODELS)]
    ft_seeds = [s for s in seeds if all("finetune" in results.get(f"{k}-s{s}", {}) for k in MODELS)]
    lines = [f"Retrieval P@1 (%), 600 test pairs, mean pooling; seeds {rs_seeds} (mean ± sd over seeds)", "",
             "| model | en→fr | fr→en | en→fr (margin) | fr→en (margin) |", "|---|---|---|---|---|"]
    for kind in MODELS:
        rs = [results[f"{kind}-s{s}"]["retrieval"] for s in rs_seeds]
        lines.append(f"| {NAMES[kind]} | " + " | ".join(mean_sd([r[k] for r in rs]) for k in
                     ("en_fr_mean", "fr_en_mean", "en_fr_mean_margin", "fr_en_mean_margin")) + " |")
    if ft_seeds:
        lines += ["", f"Pair task test accuracy (%), trained on English only, zero-shot French (chance 33.3); "
                  f"seeds {ft_seeds}", "", "| model | en | fr | avg |", "|---|---|---|---|"]
        for kind in MODELS:
            ms = [results[f"{kind}-s{s}"]["finetune"] for s in ft_seeds]
            lines.append(f"| {NAMES[kind]} | " + " | ".join(mean_sd([m[k] for m in ms]) for k in
                         ("test_en_acc", "test_fr_acc", "test_acc")) + " |")
    lines += ["", "Per seed (first: first-token pooling):", "",
              "| model | seed | en→fr | fr→en | en→fr first | fr→en first | pair en | pair fr |",
              "|---|---|---|---|---|---|---|---|"]
    for kind in MODELS:
        for s in rs_seeds:
            r, m = results[f"{kind}-s{s}"]["retrieval"], results[f"{kind}-s{s}"].get("finetune")
            cells = [f"{r[k]:.1f}" for k in ("en_fr_mean", "fr_en_mean", "en_fr_first", "fr_en_first")]
            cells += [f"{m['test_en_acc']:.1f}", f"{m['test_fr_acc']:.1f}"] if m else ["", ""]
            lines.append(f"| {NAMES[kind]} | {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--steps", type=int, default=1000, help="pretraining steps of each run")
    ap.add_argument("--runs", default="runs/transfer")
    ap.add_argument("--jobs", type=int, default=2, help="pretraining runs in parallel")
    ap.add_argument("--no-lowercase", dest="lowercase", action="store_false",
                    help="the data was not lowercased (configs/data/msgcorpus_slice.yaml lowercases)")
    ap.add_argument("--skip-finetune", action="store_true")
    args = ap.parse_args(argv)
    runs = ROOT / args.runs
    runs.mkdir(parents=True, exist_ok=True)
    if not (ROOT / "data/processed/msgcorpus_slice/vocab").exists():
        sh([sys.executable, "preprocess.py", "run", "configs/data/msgcorpus_slice.yaml"])
    if not (ROOT / "data/processed/msgcorpus_pairs/test.fr.tsv").exists():
        sh([sys.executable, "scripts/make_pair_task.py", "--out", "data/processed/msgcorpus_pairs", "--seed", "0"])

    jobs = [(k, s) for s in args.seeds for k in OBJECTIVES
            if not (runs / f"{k}-s{s}" / "checkpoints" / f"step-{args.steps:08d}.pt").exists()]
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(lambda j: sh(pretrain_cmd(j[0], j[1], args.steps, runs), runs / f"{j[0]}-s{j[1]}.out"), jobs))
    results_path = runs / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for seed in args.seeds:
        if not (runs / f"random-s{seed}.pt").exists():
            save_random_init(seed, runs / f"random-s{seed}.pt")
        for kind in MODELS:
            key, path = f"{kind}-s{seed}", model_path(kind, seed, runs)
            entry = results.setdefault(key, {})
            if "retrieval" not in entry:
                entry["retrieval"] = retrieval_scores(path, args.lowercase)
                print(key, "retrieval", json.dumps(entry["retrieval"]), flush=True)
            ft_dir = runs / f"ft-{key}"
            if not args.skip_finetune and "finetune" not in entry:
                if not (ft_dir / "results.json").exists():
                    sh([sys.executable, "scripts/finetune_xnli.py", "--config", "configs/finetune/msgcorpus_pairs.yaml",
                        f"model.path={path}", f"run.dir={ft_dir}", f"run.seed={seed}",
                        f"model.lowercase={'true' if args.lowercase else 'false'}"], runs / f"ft-{key}.out")
                entry["finetune"] = json.loads((ft_dir / "results.json").read_text())["metrics"]
                print(key, "finetune", json.dumps(entry["finetune"]), flush=True)
            save_results(results_path, {key: entry})
    table = tables(json.loads(results_path.read_text()), args.seeds)
    (runs / "results.md").write_text(table, encoding="utf-8")
    print(table)


if __name__ == "__main__":
    main()
