"""``python train.py --config FILE [section.key=value ...]``: pretrain, or resume the run in ``run.dir``.

Running the same command again after an interruption resumes from the newest checkpoint of
``run.dir``. Overrides use the config's dotted keys, e.g. ``train.max_steps=2000 run.dir=runs/b``.
"""

from __future__ import annotations

import argparse
import os
import sys

from xlm.cli.common import add_common_flags, run_cli
from xlm.config import dump_config, load_config


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    prog = prog or os.path.basename(sys.argv[0])
    prog = "python train.py" if prog == "train.py" else prog  # xlm-train when installed as a command
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Pretrain an XLM model (MLM / TLM / CLM). Rerun the same command to resume.",
        epilog=f"example: {prog} --config configs/tiny.yaml train.max_steps=500 run.dir=runs/try",
    )
    parser.add_argument("--config", required=True, help="YAML run config (see configs/)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides")
    parser.add_argument("--print-config", action="store_true",
                        help="print the fully resolved config (every key, defaults included) and exit")
    add_common_flags(parser, progress=False)
    return parser


def main_args(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        print(dump_config(cfg), end="")
        return 0
    if args.debug:
        cfg.run.debug = True
    from xlm.trainer import Trainer  # after parsing: --help stays fast

    Trainer(cfg).train()
    return 0


def main(argv: list[str] | None = None) -> None:
    run_cli(main_args, argv)
