"""Export a fine-tuned checkpoint (encoder + head) to a Hugging Face folder of the matching XLM class.

==========  ===============================  =============================================
head        transformers class               head parameters
==========  ===============================  =============================================
sequence    ``XLMForSequenceClassification``  ``sequence_summary.summary`` (first token, no
                                              activation: ``summary_type: first``)
token       ``XLMForTokenClassification``     ``classifier``
span        ``XLMForQuestionAnsweringSimple`` ``qa_outputs`` (start, end)
==========  ===============================  =============================================

The encoder is written as :func:`xlm.save_pretrained` writes it (config, vocabulary, BPE merges,
tokenizer settings), without the language-model output layer. Logits are identical to ours
given the same inputs; note that Hugging Face builds no pair layout itself: pass the
``position_ids`` and ``langs`` of :mod:`xlm.tasks.inputs` (continuing positions, the second
sentence's language from the shared ``</s>`` on).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from xlm.checkpoint import load_checkpoint
from xlm.errors import XLMError
from xlm.io import atomic_write_text
from xlm.model import interop

HF_HEADS = {
    "sequence": ("XLMForSequenceClassification", "sequence_summary.summary"),
    "token": ("XLMForTokenClassification", "classifier"),
    "span": ("XLMForQuestionAnsweringSimple", "qa_outputs"),
}


def export_hf(checkpoint: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write ``out`` (a folder) from a fine-tuned checkpoint file or run folder (its ``best.pt``)."""
    from xlm.pretrained import find_checkpoint, load_pretrained, save_pretrained

    path = Path(checkpoint)
    if path.is_dir():
        path = find_checkpoint(path)
    ckpt = load_checkpoint(path)
    kind = ckpt.get("head_kind")
    if kind not in HF_HEADS or "head" not in ckpt:
        raise XLMError(f"{path}: not a fine-tuned checkpoint (no task head); export the encoder with "
                       f"scripts/convert_checkpoint.py --format hf")
    cls, prefix = HF_HEADS[kind]
    p = load_pretrained(path)
    from xlm.model.interop_xlmr import is_xlmr

    if is_xlmr(p.model.cfg):
        raise XLMError(f"{path}: a fine-tuned XLM-R-style model: task heads export to XLM's Hugging Face classes "
                       "only; export the encoder with scripts/convert_checkpoint.py --format hf")
    out = Path(out)
    save_pretrained(p, out, format="hf")
    try:
        from safetensors.torch import save_file
    except ImportError:
        raise XLMError("exporting to Hugging Face needs the safetensors package: pip install safetensors") from None
    state = {k: v for k, v in interop.ours_to_hf_state(p.model.state_dict(), tied=False).items()
             if not k.startswith("pred_layer.")}
    state.update({f"{prefix}.{k}": v.detach().contiguous() for k, v in ckpt["head"].items()})
    tmp = out / ".model.safetensors.tmp"
    save_file(state, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, out / "model.safetensors")
    conf = json.loads((out / "config.json").read_text(encoding="utf-8"))
    labels = list(ckpt.get("labels") or [])
    n = int(ckpt.get("n_outputs", len(labels)))
    conf.update({"architectures": [cls], "num_labels": n})
    if kind == "span":
        labels = ["start", "end"]
    if labels and len(labels) == n:
        conf["id2label"] = {str(i): lab for i, lab in enumerate(labels)}
        conf["label2id"] = {lab: i for i, lab in enumerate(labels)}
    if kind == "sequence":
        dropout = float(((ckpt.get("config") or {}).get("head") or {}).get("dropout", 0.1))
        conf.update({"summary_type": "first", "summary_use_proj": True, "summary_activation": None,
                     "summary_proj_to_labels": True, "summary_first_dropout": dropout})
        if not labels:
            conf["problem_type"] = "regression"
    conf["xlm"] = {**conf.get("xlm", {}), "task": ckpt.get("task"), "head_kind": kind}
    atomic_write_text(out / "config.json", interop.dumps(conf))
    return out
