#!/usr/bin/env python
"""Soak test (not in CI): a long run of the tiny config, watching memory and file handles.

    python scripts/soak.py [--steps 2000] [--run-dir runs/soak] [--warmup-frac 0.2]

Starts ``train.py --config configs/tiny.yaml`` for ``--steps`` steps with evaluation and
checkpointing every 200 steps, samples the process's RSS and open file descriptors every second
from /proc, and after the warm-up fraction asserts RSS growth under 5% and no descriptor growth
(first tenth of the samples after warm-up against the last tenth).
Prints the figures; exits 1 if a bound is broken. Needs the preprocessed slice
(``python preprocess.py run configs/data/msgcorpus_slice.yaml``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def n_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def last_step(metrics: Path) -> int:
    if not metrics.exists():
        return 0
    step = 0
    for line in metrics.read_text().splitlines():
        try:
            step = max(step, int(json.loads(line).get("step", 0)))
        except (ValueError, AttributeError):
            continue
    return step


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--run-dir", default="runs/soak")
    ap.add_argument("--warmup-frac", type=float, default=0.2)
    ap.add_argument("--max-rss-growth", type=float, default=0.05)
    args = ap.parse_args()
    run_dir = ROOT / args.run_dir
    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = [sys.executable, "train.py", "--config", "configs/tiny.yaml", f"run.dir={args.run_dir}",
           f"train.max_steps={args.steps}", "train.eval_every=200", "train.save_every=200", "run.log_every=50"]
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples: list[tuple[int, float, int]] = []  # (step, rss MiB, fds)
    while proc.poll() is None:
        try:
            samples.append((last_step(run_dir / "metrics.jsonl"), rss_mib(proc.pid), n_fds(proc.pid)))
        except (FileNotFoundError, ProcessLookupError):
            break
        time.sleep(1.0)
    err = proc.stderr.read() if proc.stderr else ""
    elapsed = time.time() - t0
    if proc.returncode != 0:
        print(f"training failed (exit {proc.returncode}): {err.strip().splitlines()[-1:] }")
        return 1
    warm = int(args.steps * args.warmup_frac)
    after = [s for s in samples if warm <= s[0] < args.steps]  # not the shutdown
    if len(after) < 2:
        print("not enough samples after warm-up")
        return 1
    # Compare the first and last tenth of the samples after warm-up: a leak grows steadily, while a
    # file opened for a moment (a checkpoint being written, an evaluation) comes and goes.
    tenth = max(1, len(after) // 10)
    head, tail = after[:tenth], after[-tenth:]
    base_rss, end_rss = max(s[1] for s in head), max(s[1] for s in tail)
    base_fds, end_fds = min(s[2] for s in head), min(s[2] for s in tail)
    growth = end_rss / base_rss - 1
    print(f"{args.steps} steps in {elapsed:.0f} s; {len(samples)} samples; warm-up until step {warm}")
    print(f"RSS just after warm-up {base_rss:.1f} MiB, at the end {end_rss:.1f} MiB: growth {growth * 100:+.2f}% "
          f"(bound {args.max_rss_growth * 100:.0f}%); peak over the run {max(s[1] for s in samples):.1f} MiB")
    print(f"open file descriptors just after warm-up {base_fds}, at the end {end_fds} "
          f"(momentary peak {max(s[2] for s in after)})")
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    print(f"checkpoints left: {ckpts}")
    (run_dir / "soak_samples.json").write_text(json.dumps(samples))
    ok = growth < args.max_rss_growth and end_fds <= base_fds
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
