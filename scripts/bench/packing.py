#!/usr/bin/env python
"""What ``data.pack`` does to a config's TLM batches: shapes per task and the share of real tokens.

For every pair task of MLM (TLM), one epoch of this rank's batches is cut twice: as packed rows
(:class:`xlm.data.packing.PackedPairSampler`, one shape ``(rows, bptt)``, rows from
:func:`xlm.data.packing.pack_rows`) and as the unpacked
sampler cuts them (each batch padded to its longest pair); prints batches, distinct shapes and real
tokens / tensor cells for both. No model runs; the data folder must exist (``preprocess.py``).

    python scripts/bench/packing.py [--config configs/tiny.yaml] [key=value ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[0] = str(ROOT)  # not scripts/bench/: its tokenize.py would shadow the standard library's

import numpy as np  # noqa: E402

from xlm.config import load_config  # noqa: E402
from xlm.corpora import load_data  # noqa: E402
from xlm.data.datasets import ParallelSampler  # noqa: E402
from xlm.data.packing import PackedPairSampler, packed  # noqa: E402
from xlm.distributed import DistInfo  # noqa: E402
from xlm.objectives import parse_tasks  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "tiny.yaml"))
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    cfg = load_config(args.config, ["data.pack=true", *args.overrides])
    d = cfg.data
    tasks = [t for t in parse_tasks(cfg.objectives) if packed(t)]
    data = load_data(cfg, tasks, DistInfo(), warn=lambda m: None)
    print("| task | layout | batches / epoch | shapes | real tokens / cells |\n|---|---|---|---|---|")
    for task, src in data.sources.items():
        sampler = src.sampler
        assert isinstance(sampler, PackedPairSampler)
        lengths, real = sampler.lengths, int(sampler.lengths[sampler.shard].sum())
        rows = sampler.make_epoch(np.random.default_rng(0))
        print(f"| {task.name} | packed, {sampler.rows} x {d.bptt} | {len(rows)} | 1 | "
              f"{real / (len(rows) * sampler.rows * d.bptt):.1%} |")
        plain = ParallelSampler(lengths, d.batch_size, d.tokens_per_batch, d.max_batch_size, d.group_by_size,
                                cfg.run.seed).make_epoch(np.random.default_rng(0))
        shapes = {(len(b), int(lengths[b].max())) for b in plain}
        cells = sum(len(b) * int(lengths[b].max()) for b in plain)
        print(f"| {task.name} | unpacked (group_by_size: {d.group_by_size}) | {len(plain)} | {len(shapes)} | "
              f"{real / cells:.1%} |")


if __name__ == "__main__":
    main()
