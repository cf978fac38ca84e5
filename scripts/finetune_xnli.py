"""Fine-tune a pretrained model on sentence-pair classification (XNLI-style), test on every language.

    python scripts/finetune_xnli.py --config configs/finetune/xnli.yaml model.path=PATH data.path=DIR
    python scripts/finetune_xnli.py --config configs/finetune/msgcorpus_pairs.yaml model.path=runs/tiny

Overrides use the config's dotted keys. Rerunning the same command resumes from the newest
checkpoint of ``run.dir``. See :mod:`xlm.finetune` for the data format and the model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xlm.cli.common import add_common_flags, run_cli  # noqa: E402


def main_args(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="scripts/finetune_xnli.py", description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="YAML fine-tuning config (configs/finetune/)")
    ap.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides")
    add_common_flags(ap, progress=False)
    args = ap.parse_args(argv)
    from xlm.finetune import finetune, load_finetune_config

    cfg = load_finetune_config(args.config, args.overrides)
    if args.debug:
        cfg.run.debug = True
    finetune(cfg)
    return 0


if __name__ == "__main__":
    run_cli(main_args)
