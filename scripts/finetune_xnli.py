"""Fine-tune a pretrained model on sentence-pair classification (XNLI-style), test on every language.

Kept for old command lines; it is ``python -m xlm.finetune sentence`` (see docs/downstream.md):

    python scripts/finetune_xnli.py --config configs/finetune/xnli.yaml model.path=PATH data.path=DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xlm.cli.common import run_cli  # noqa: E402
from xlm.finetune import main  # noqa: E402

if __name__ == "__main__":
    run_cli(lambda argv: main(["sentence", *argv]))
