"""Tokens/s of real training runs with 1 and N processes (torchrun, gloo on CPU / NCCL on GPUs).

    python scripts/bench/scaling.py [--procs 1 2] [--steps 60] [--cpu-peak-gflops 100] [key=value ...]

Each run is ``python -m torch.distributed.run --standalone --nproc-per-node=P train.py`` on the same
synthetic corpus with the same per-process batch (weak scaling: P processes train on a P times
larger global batch). Throughput is read from the run's own ``metrics.jsonl`` (``tokens_per_s``:
all ranks; the first log interval, which includes start-up, is skipped). Scaling efficiency is
``tokens_per_s(P) / (P * tokens_per_s(1))``. MFU is the model's training FLOPs per token times
tokens/s per device over the per-device peak: on CPU the peak is ``--cpu-peak-gflops`` for the
whole machine (default 100: the fp32 matmul rate of the 2-core development machine, see
``/work/shared/DESIGN.md``) divided by the processes, each process running one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from training_data import synthetic_folder  # noqa: E402


def config(data: Path, run: Path, steps: int) -> dict:
    return {
        "run": {"dir": str(run), "seed": 0, "log_every": 10, "tensorboard": False},
        "data": {"path": str(data), "langs": ["en", "fr"], "bptt": 64, "batch_size": 16, "tokens_per_batch": 1000},
        "model": {"emb_dim": 128, "n_layers": 2, "n_heads": 4, "dropout": 0.1, "attention_dropout": 0.1},
        "objectives": {"mlm": ["en", "fr"]},
        "optim": {"lr": 0.0005, "warmup_updates": 10},
        "train": {"max_steps": steps, "eval_every": 100000, "save_every": 100000, "eval_at_start": False,
                  "eval_max_sentences": 8, "validation_metric": ""},
    }


def run(procs: int, data: Path, work: Path, steps: int, peak_gflops: float, overrides: list[str]) -> dict:
    rundir = work / f"p{procs}"
    cfg = work / f"p{procs}.yaml"
    cfg.write_text(yaml.safe_dump(config(data, rundir, steps)), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    peak = peak_gflops / procs / 1000  # TFLOP/s per process
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}",
           str(ROOT / "train.py"), "--config", str(cfg), f"train.peak_tflops={peak}", *overrides]
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=1800)
    recs = [json.loads(x) for x in (rundir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in recs if r["kind"] == "train"][1:]  # the first interval includes start-up
    return {
        "procs": procs,
        "tokens_per_s": statistics.median(r["tokens_per_s"] for r in train),
        "tokens_per_s_per_device": statistics.median(r["tokens_per_s_per_device"] for r in train),
        "mfu": statistics.median(r.get("mfu", float("nan")) for r in train),
        "memory_gb": max(r["memory_gb"] for r in train),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--cpu-peak-gflops", type=float, default=100.0, help="whole machine, fp32")
    ap.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = synthetic_folder(work / "data", n_words=2000, n_train=4000, n_eval=20)
        results = [run(p, data, work, args.steps, args.cpu_peak_gflops, args.overrides) for p in args.procs]
    base = results[0]["tokens_per_s"] / results[0]["procs"]
    print(f"{'procs':>5} {'tokens/s':>10} {'per device':>11} {'efficiency':>10} {'MFU':>7} {'max RSS GB':>10}")
    for r in results:
        eff = r["tokens_per_s"] / (r["procs"] * base)
        print(f"{r['procs']:>5} {r['tokens_per_s']:>10.0f} {r['tokens_per_s_per_device']:>11.0f} {eff:>10.1%} "
              f"{r['mfu']:>7.1%} {r['memory_gb']:>10.2f}")


if __name__ == "__main__":
    main()
