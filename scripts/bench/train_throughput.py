"""Tokens/s of the whole training loop next to the bare model step on the same batches.

    python scripts/bench/train_throughput.py [--config configs/tiny.yaml] [--steps 20] [--rounds 5] [key=value ...]

*Loop* = ``Trainer.train_step()`` (batches built in the step, or with ``--prefetch N`` by the
background thread up to N steps ahead) and the reading of its statistics (``Trainer.resolve``):
task draw, reading the memory-mapped data, masking, tensors,
forward + loss on the masked positions + backward for every task, gradient clipping, AdamW,
schedule. *Bare* = the same tasks' batches built once beforehand, then only forward + loss +
backward per batch and one AdamW step. Both run in alternating rounds in one process (so load
from other processes hits both alike); the medians are compared. The loop overhead is
``1 - loop_tokens_per_s / bare_tokens_per_s`` (target: at most 3%, on CPU and GPU alike).

Uses ``data.path`` of the config when that folder exists (run ``python preprocess.py run
configs/data/msgcorpus_slice.yaml`` first), else a space-tokenized copy of the bundled slice.
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
from xlm.data.sampling import TAG_MASK, TAG_OBJECTIVES, rng  # noqa: E402
from xlm.objectives import loss, make_batch  # noqa: E402
from xlm.train.prefetch import Prefetcher  # noqa: E402
from xlm.trainer import Trainer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "tiny.yaml"))
    ap.add_argument("--steps", type=int, default=20, help="steps per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--prefetch", type=int, default=0,
                    help="steps built ahead by the loop's background thread (0: built in the step)")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    tmp = Path(tempfile.mkdtemp(prefix="xlm-bench-"))
    overrides = [f"run.dir={tmp / 'run'}", "run.tensorboard=false", *args.overrides]
    cfg = load_config(args.config, overrides)
    if not (ROOT / cfg.data.path).is_dir() and not Path(cfg.data.path).is_dir():
        sys.path.insert(0, str(ROOT / "tests"))
        from training_data import slice_folder

        cfg.data.path = str(slice_folder(tmp / "data", n_train=12000, n_eval=100))
        cfg.data.max_vocab = cfg.data.max_vocab if cfg.data.max_vocab > 0 else 8000
        print(f"(no {args.config} data folder: using a space-tokenized slice, max_vocab {cfg.data.max_vocab})")
    elif not Path(cfg.data.path).is_dir():
        cfg.data.path = str(ROOT / cfg.data.path)
    trainer = Trainer(cfg)
    model, opt = trainer.train_model, trainer.optimizer
    model.train()

    if cfg.train.accumulate_gradients != 1:
        raise SystemExit("benchmark assumes train.accumulate_gradients=1")
    seed, sources = cfg.run.seed, trainer.data.sources
    if args.prefetch:  # the loop reads ahead: the bare step's batches come from a twin (same data order)
        trainer.prefetcher = Prefetcher(trainer.builder, trainer.state.step, args.prefetch)
        twin = Trainer(cfg)
        sources, bare_next = twin.data.sources, [trainer.state.step]
    else:
        bare_next = None

    def prebuild() -> list[list]:
        """The batches the next ``--steps`` loop steps will build (same draws, same masks), made up front."""
        if bare_next is not None:
            first = bare_next[0]
            bare_next[0] += args.steps
            return [[(m.weight, m.batch) for m in twin.builder.build(step).micro]
                    for step in range(first, first + args.steps)]
        saved = {t: s.sampler.state_dict() for t, s in sources.items()}
        steps = []
        for step in range(trainer.state.step, trainer.state.step + args.steps):
            drawn = trainer.drawer.draw(step, rng(seed, TAG_OBJECTIVES, step))
            steps.append([(w, make_batch(t, sources[t].next(), trainer.masker, rng(seed, TAG_MASK, 0, step, 0, j),
                                         cfg.objectives.context_size).to(trainer.device))
                          for j, (t, w) in enumerate(drawn)])
        for t, s in sources.items():
            s.sampler.load_state_dict(saved[t])
        return steps

    def bare_round(steps: list[list]) -> float:
        t0 = time.perf_counter()
        for batches in steps:
            opt.zero_grad(set_to_none=True)
            for w, b in batches:
                with trainer.autocast():
                    value = loss(model, b)
                (value * w).backward()
            opt.step()
        return time.perf_counter() - t0

    def loop_round() -> float:
        t0 = time.perf_counter()
        for _ in range(args.steps):
            trainer.train_step()
            if trainer.resolve_every_step:
                trainer.resolve()
        trainer.resolve()  # the statistics read once per log interval (here: per round)
        return time.perf_counter() - t0

    bare_round(prebuild()), loop_round()  # warm up both paths
    bare, loop, ratios = [], [], []
    for _ in range(args.rounds):
        steps = prebuild()  # the loop round below builds exactly these batches itself
        tokens = sum(b.n_tokens for batches in steps for _, b in batches)
        tb, tl = bare_round(steps), loop_round()
        bare.append(tokens / tb)
        loop.append(tokens / tl)
        ratios.append(tb / tl)
    b, lp, ratio = statistics.median(bare), statistics.median(loop), statistics.median(ratios)
    m = trainer.model
    trainer.prefetcher.close()
    print(f"prefetch {args.prefetch}; "
          f"model {m.num_parameters() / 1e6:.2f}M params, dim {m.dim}, {m.n_layers} layers, {m.n_words} words; "
          f"{len(steps[0])} tasks per step, {args.steps} steps x {args.rounds} rounds, "
          f"{torch.get_num_threads()} threads")
    print(f"bare model step : {b:10.0f} tokens/s  (rounds: {', '.join(f'{x:.0f}' for x in bare)})")
    print(f"training loop   : {lp:10.0f} tokens/s  (rounds: {', '.join(f'{x:.0f}' for x in loop)})")
    print(f"loop / bare (median of per-round ratios, same batches) = {ratio:.3f}  ->  "
          f"loop overhead {100 * (1 - ratio):.1f}% (target <= 3%)")


if __name__ == "__main__":
    main()
