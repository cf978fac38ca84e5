"""xlm: cross-lingual language-model pretraining (Lample & Conneau, 2019), reimplemented.

Notebook API::

    import xlm
    p = xlm.load_pretrained(path)            # original .pth (codes=..., lowercase=...), HF folder or ours
    tokens, lengths, langs = p.tokenize(["raw text"], lang="en")   # as the training text was prepared
    h = p.model(tokens, lengths=lengths, langs=langs)              # (batch, seq) -> (batch, seq, emb_dim)
    logits = p.model.predict(h)              # (..., n_words) for the positions passed in
    xlm.save_pretrained(p, out, format="hf") # or "original", "xlm"
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xlm.config import Config, ModelConfig, load_config
    from xlm.data.dictionary import Dictionary
    from xlm.errors import XLMError
    from xlm.model.transformer import TransformerModel
    from xlm.pretrained import Pretrained, load_pretrained, save_pretrained

# The public names are imported on first use, so that `import xlm.cli.preprocess` (and any tool
# that never touches the model) does not pay seconds for importing torch.
_EXPORTS = {
    "Config": "xlm.config", "ModelConfig": "xlm.config", "load_config": "xlm.config",
    "Dictionary": "xlm.data.dictionary", "XLMError": "xlm.errors", "TransformerModel": "xlm.model.transformer",
    "Pretrained": "xlm.pretrained", "load_pretrained": "xlm.pretrained", "save_pretrained": "xlm.pretrained",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'xlm' has no attribute {name!r}")


__version__ = "0.1.0"
__all__ = [
    "Config", "Dictionary", "ModelConfig", "Pretrained", "TransformerModel", "XLMError",
    "load_config", "load_pretrained", "save_pretrained",
]
