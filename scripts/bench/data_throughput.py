#!/usr/bin/env python
"""Tokens/s one loader core produces: the training data path of ``xlm.train.prefetch.StepBuilder``.

A built step is what the background prefetcher hands to the training step: task draw, memory-mapped
reads, MLM/TLM masking (numpy), tensors and the host-side prediction index. Runs in this process on
one thread (``torch.set_num_threads(1)``, set ``OMP_NUM_THREADS=1`` too), so the figure is per core.
Target: >= 2 M tokens/s per core (about 2.5x what one H200 consumes at 40% MFU on the 1024x6 model).

    python scripts/bench/data_throughput.py [--batch 32 --bptt 256 --steps 200 --rounds 3] [key=value ...]

Uses a space-tokenized copy of the bundled slice (real text, real frequencies), MLM on en and fr
streams and TLM on en-fr pairs, unless a config with an existing ``data.path`` is given.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[0] = str(ROOT)  # not scripts/bench/: its tokenize.py would shadow the standard library's (torch imports it)

import torch  # noqa: E402

from xlm.config import load_config  # noqa: E402
from xlm.trainer import Trainer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "tiny.yaml"))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--bptt", type=int, default=256)
    ap.add_argument("--steps", type=int, default=200, help="steps built per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="xlm-bench-"))
    overrides = [f"run.dir={tmp / 'run'}", "run.tensorboard=false", f"data.batch_size={args.batch}",
                 f"data.bptt={args.bptt}", "model.max_positions=512", *args.overrides]
    cfg = load_config(args.config, overrides)
    if not Path(cfg.data.path).is_dir() and not (ROOT / cfg.data.path).is_dir():
        sys.path.insert(0, str(ROOT / "tests"))
        from training_data import slice_folder

        cfg.data.path = str(slice_folder(tmp / "data", n_train=3000, n_eval=50))
    elif not Path(cfg.data.path).is_dir():
        cfg.data.path = str(ROOT / cfg.data.path)
    builder = Trainer(cfg).builder
    rates, mix = [], {"streams": 0, "pairs": 0}
    step = 0
    builder.build(step)  # warm up (first epoch orders)
    for _ in range(args.rounds):
        tokens = 0
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step += 1
            for m in builder.build(step).micro:
                tokens += m.n_tokens
                mix["pairs" if m.task.is_pair else "streams"] += m.n_tokens
        rates.append(tokens / (time.perf_counter() - t0))
    share = mix["pairs"] / max(sum(mix.values()), 1)
    print(f"batch {args.batch} x bptt {args.bptt}; tasks {', '.join(cfg.objectives.clm + cfg.objectives.mlm)} "
          f"({100 * share:.0f}% of the tokens from pairs); {args.steps} steps x {args.rounds} rounds, one thread")
    print(f"data path: {statistics.median(rates) / 1e6:.2f} M tokens/s per core (rounds "
          f"{', '.join(f'{x / 1e6:.2f}' for x in rates)}; target >= 2 M)")

if __name__ == "__main__":
    main()
