"""Do ERNIE-M's objectives help at this scale? MLM, +TLM, +CAMLM, +BTMLM on disjoint splits, fixed seeds.

The bundled monolingual training files are the same 12,000 sentences as the en-fr pairs, so this
script first writes ``data/processed/msgcorpus_disjoint/`` from the binarized slice with **disjoint
training roles** (no sentence in two roles):

- pairs ``train.en-fr.*``: sentence ids ``[0, n/3)`` (TLM, CAMLM);
- monolingual ``train.en``: the English side of ids ``[n/3, 2n/3)`` (MLM en, BTMLM en>fr);
- monolingual ``train.fr``: the French side of ids ``[2n/3, n)`` (MLM fr, BTMLM fr>en);

valid/test files, vocabulary and codes unchanged. Then for each seed, configs/tiny.yaml on that
folder, the same model and the same number of steps for:

- ``mlm``: ``mlm: [en, fr]``
- ``tlm``: ``mlm: [en, fr, en-fr]``
- ``camlm``: the same plus ``camlm: [en-fr]``
- ``btmlm``: the same plus ``btmlm: [en>fr, fr>en]``, staged as ERNIE-M: CAMLM for the first half of
  the steps, BTMLM for the second (``lambda_camlm``/``lambda_btmlm`` schedules).

Each final checkpoint is scored on en<->fr retrieval P@1 over the 600 held-out test pairs (mean
pooling, cosine and margin; as scripts/transfer_experiment.py) and, unless ``--skip-finetune``, on
the derived pair task trained on English, tested zero-shot on French. Rerunning skips finished
stages. Results: ``RUNS/results.json`` and ``RUNS/results.md``.

    OMP_NUM_THREADS=1 python scripts/objectives_experiment.py --seeds 0 1 2 --steps 1000
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from transfer_experiment import mean_sd, retrieval_scores, save_results, sh  # noqa: E402

SOURCE = ROOT / "data/processed/msgcorpus_slice"
DISJOINT = ROOT / "data/processed/msgcorpus_disjoint"
MODELS = ("mlm", "tlm", "camlm", "btmlm")
NAMES = {"mlm": "MLM [en, fr]", "tlm": "MLM+TLM", "camlm": "MLM+TLM+CAMLM", "btmlm": "MLM+TLM+CAMLM→BTMLM"}


def objectives(kind: str, steps: int) -> list[str]:
    out = ["objectives.mlm=[en,fr]" if kind == "mlm" else "objectives.mlm=[en,fr,en-fr]"]
    if kind in ("camlm", "btmlm"):
        out.append("objectives.camlm=[en-fr]")
    if kind == "btmlm":
        half = steps // 2
        out += ["objectives.btmlm=[en>fr,fr>en]", f"objectives.lambda_camlm=0:1,{half}:1,{half + 1}:0",
                f"objectives.lambda_btmlm=0:0,{half}:0,{half + 1}:1"]
    return out


def make_disjoint(src: Path = SOURCE, out: Path = DISJOINT) -> Path:
    """Write the disjoint-roles folder (see the module docstring); returns it."""
    from xlm.data.dictionary import Dictionary
    from xlm.data.indexed import IndexedDataset, IndexedWriter

    if (out / "train.fr.idx").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and not f.name.startswith("train."):
            shutil.copy2(f, out / f.name)
    dico = Dictionary.read_vocab(src / "vocab")
    en, fr = IndexedDataset(src / "train.en-fr.en"), IndexedDataset(src / "train.en-fr.fr")
    n = len(en)
    cut1, cut2 = n // 3, 2 * n // 3

    def write(name: str, ds: IndexedDataset, lo: int, hi: int) -> None:
        with IndexedWriter(out / name, len(dico), dico.fingerprint()) as w:
            for i in range(lo, hi):
                w.add(ds.tokens[ds.offsets[i] : ds.offsets[i + 1] - 1])

    write("train.en-fr.en", en, 0, cut1)
    write("train.en-fr.fr", fr, 0, cut1)
    write("train.en", en, cut1, cut2)
    write("train.fr", fr, cut2, n)
    (out / "README").write_text(f"Disjoint training roles from {src.name}: pairs = ids [0, {cut1}), mono en = "
                                f"[{cut1}, {cut2}), mono fr = [{cut2}, {n}) (scripts/objectives_experiment.py)\n")
    return out


def pretrain_cmd(kind: str, seed: int, steps: int, runs: Path, data: Path) -> list[str]:
    return [sys.executable, "train.py", "--config", "configs/tiny.yaml", f"run.dir={runs}/{kind}-s{seed}",
            f"data.path={data}", f"run.seed={seed}", *objectives(kind, steps), f"train.max_steps={steps}",
            f"train.eval_every={steps}", f"train.save_every={steps}", "train.eval_at_start=false",
            "run.tensorboard=false"]


def tables(results: dict, seeds: list[int]) -> str:
    done = [s for s in seeds if all("retrieval" in results.get(f"{k}-s{s}", {}) for k in MODELS)]
    lines = [f"Retrieval P@1 (%), 600 test pairs, mean pooling; seeds {done} (mean ± sd over seeds)", "",
             "| model | en→fr | fr→en | en→fr (margin) | fr→en (margin) | pair en | pair fr (zero-shot) |",
             "|---|---|---|---|---|---|---|"]
    for kind in MODELS:
        rs = [results[f"{kind}-s{s}"]["retrieval"] for s in done]
        cells = [mean_sd([r[k] for r in rs]) if rs else "" for k in
                 ("en_fr_mean", "fr_en_mean", "en_fr_mean_margin", "fr_en_mean_margin")]
        ft = [results[f"{kind}-s{s}"]["finetune"] for s in done if "finetune" in results[f"{kind}-s{s}"]]
        cells += [mean_sd([m[k] for m in ft]) if ft else "not run" for k in ("test_en_acc", "test_fr_acc")]
        lines.append(f"| {NAMES[kind]} | " + " | ".join(cells) + " |")
    lines += ["", "Per seed:", "", "| model | seed | en→fr | fr→en | en→fr margin | fr→en margin |",
              "|---|---|---|---|---|---|"]
    for kind in MODELS:
        for s in done:
            r = results[f"{kind}-s{s}"]["retrieval"]
            lines.append(f"| {NAMES[kind]} | {s} | " + " | ".join(
                f"{r[k]:.1f}" for k in ("en_fr_mean", "fr_en_mean", "en_fr_mean_margin", "fr_en_mean_margin")) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=1000, help="pretraining steps of each run")
    ap.add_argument("--runs", default="runs/objectives")
    ap.add_argument("--skip-finetune", action="store_true")
    args = ap.parse_args(argv)
    runs = ROOT / args.runs
    runs.mkdir(parents=True, exist_ok=True)
    if not (SOURCE / "vocab").exists():
        sh([sys.executable, "preprocess.py", "run", "configs/data/msgcorpus_slice.yaml"])
    data = make_disjoint()
    if not args.skip_finetune and not (ROOT / "data/processed/msgcorpus_pairs/test.fr.tsv").exists():
        sh([sys.executable, "scripts/make_pair_task.py", "--out", "data/processed/msgcorpus_pairs", "--seed", "0"])
    results_path = runs / "results.json"
    for seed in args.seeds:  # seed by seed: a partial run still gives complete rows
        for kind in MODELS:
            final = runs / f"{kind}-s{seed}" / "checkpoints" / f"step-{args.steps:08d}.pt"
            if not final.exists():
                sh(pretrain_cmd(kind, seed, args.steps, runs, data), runs / f"{kind}-s{seed}.out")
            results = json.loads(results_path.read_text()) if results_path.exists() else {}
            key = f"{kind}-s{seed}"
            entry = results.setdefault(key, {"steps": args.steps})
            if "retrieval" not in entry:
                entry["retrieval"] = retrieval_scores(final, lowercase=True)
                print(key, "retrieval", json.dumps(entry["retrieval"]), flush=True)
            ft_dir = runs / f"ft-{key}"
            if not args.skip_finetune and "finetune" not in entry:
                if not (ft_dir / "results.json").exists():
                    sh([sys.executable, "scripts/finetune_xnli.py", "--config", "configs/finetune/msgcorpus_pairs.yaml",
                        f"model.path={final}", f"run.dir={ft_dir}", f"run.seed={seed}", "model.lowercase=true"],
                       runs / f"ft-{key}.out")
                entry["finetune"] = json.loads((ft_dir / "results.json").read_text())["metrics"]
            save_results(results_path, {key: entry})
        table = tables(json.loads(results_path.read_text()), args.seeds)
        (runs / "results.md").write_text(table, encoding="utf-8")
        print(table, flush=True)


if __name__ == "__main__":
    main()
