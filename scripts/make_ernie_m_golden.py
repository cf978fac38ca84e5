#!/usr/bin/env python
"""Make tests/golden/ernie_m/: a tiny random ERNIE-M made by the real ``transformers`` class, once.

transformers 5.x no longer ships ``ernie_m`` (deprecated, then removed); this script needs the last
versions that have it, e.g. in a separate environment::

    python -m venv --system-site-packages /tmp/tf4 && /tmp/tf4/bin/pip install "transformers==4.44.2"
    /tmp/tf4/bin/python scripts/make_ernie_m_golden.py tests/golden/ernie_m

It writes two folders as ``save_pretrained`` writes them: ``model/`` (``ErnieMModel``: keys without a
prefix) and ``classifier/`` (``ErnieMForSequenceClassification``: keys under ``ernie_m.``), each with
``expected.pt``: the input ids and the encoder's last hidden states in eval mode.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import transformers
from transformers import ErnieMConfig, ErnieMForSequenceClassification, ErnieMModel

IDS = torch.tensor([[0, 5, 9, 33, 2], [0, 7, 2, 1, 1]])  # pad id 1 at the end of the second row


def main(out: Path) -> None:
    conf = ErnieMConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=48, max_position_embeddings=40, pad_token_id=1, num_labels=3)
    for name, cls in (("model", ErnieMModel), ("classifier", ErnieMForSequenceClassification)):
        torch.manual_seed(0)
        model = cls(conf).eval()
        with torch.no_grad():  # LayerNorms and biases random too, so that a wrong mapping shows
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.3)
            base = model if name == "model" else model.ernie_m
            hidden = base(IDS, attention_mask=(IDS != 1).long()).last_hidden_state
        folder = out / name
        model.save_pretrained(folder, safe_serialization=True)
        torch.save({"ids": IDS, "hidden": hidden, "transformers": transformers.__version__}, folder / "expected.pt")
        print(f"{folder}: transformers {transformers.__version__}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "tests/golden/ernie_m"))
