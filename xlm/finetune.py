"""The downstream suite's entry point: fine-tune or evaluate a pretrained model on a benchmark.

    python -m xlm.finetune sentence  --config configs/finetune/xnli.yaml model.path=M data.path=D
    python -m xlm.finetune tokens    --config configs/finetune/conll_ner.yaml model.path=M data.path=D
    python -m xlm.finetune qa        --config configs/finetune/mlqa.yaml model.path=M data.path=D
    python -m xlm.finetune retrieval --config configs/finetune/tatoeba.yaml model.path=M data.path=D
    python -m xlm.finetune mining    --config configs/finetune/bucc.yaml model.path=M data.path=D
    python -m xlm.finetune export RUN_OR_CHECKPOINT OUT_DIR      # Hugging Face task classes

Overrides use the config's dotted keys. Fine-tuning runs resume when rerun. Each run writes
``RUN/results.json`` and ``RUN/results.md`` (one column per language, then the average). See
docs/downstream.md and :mod:`xlm.tasks`.
"""

from __future__ import annotations

import argparse
from typing import Any

from xlm.cli.common import add_common_flags, run_cli
from xlm.tasks import TASKS


def run_task(task: str, cfg: Any) -> dict[str, Any]:
    """Run ``task`` with its loaded config (:func:`xlm.tasks.config.load_task_config`); returns the results."""
    if task == "retrieval":
        from xlm.tasks.mining import run_retrieval

        return run_retrieval(cfg)
    if task == "mining":
        from xlm.tasks.mining import run_mining

        return run_mining(cfg)
    from xlm.tasks.metrics import check_metric_libraries
    from xlm.tasks.runner import Finetuner

    check_metric_libraries(task)  # not after a whole run's training
    if task == "sentence":
        from xlm.tasks.classification import SentenceTask as cls
    elif task == "tokens":
        from xlm.tasks.tokens import TokensTask as cls
    else:
        from xlm.tasks.qa import QATask as cls
    return Finetuner(cls(cfg)).train()


def main(argv: list[str]) -> int:
    if argv[:1] == ["export"]:
        ap = argparse.ArgumentParser(prog="python -m xlm.finetune export",
                                     description="export a fine-tuned checkpoint to a Hugging Face task class")
        ap.add_argument("checkpoint", help="a fine-tuned run folder (its best.pt) or checkpoint file")
        ap.add_argument("out", help="output folder")
        add_common_flags(ap, progress=False)
        args = ap.parse_args(argv[1:])
        from xlm.tasks.hf_export import export_hf

        print(f"wrote {export_hf(args.checkpoint, args.out)}")
        return 0
    ap = argparse.ArgumentParser(prog="python -m xlm.finetune", description=__doc__.splitlines()[0])
    ap.add_argument("task", choices=[*TASKS, "export"], help="the task type")
    ap.add_argument("--config", required=True, help="YAML task config (configs/finetune/)")
    ap.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides")
    add_common_flags(ap, progress=False)
    args = ap.parse_intermixed_args(argv)  # TASK --config FILE KEY=VALUE...
    from xlm.tasks.config import load_task_config

    cfg = load_task_config(args.task, args.config, args.overrides)
    if args.debug:
        cfg.run.debug = True
    run_task(args.task, cfg)
    return 0


if __name__ == "__main__":
    run_cli(main)
