"""xlm: cross-lingual language-model pretraining (Lample & Conneau, 2019), reimplemented.

Notebook API::

    import xlm
    p = xlm.load_pretrained(path)            # original .pth, HF folder or ours: auto-detected
    h = p.model(tokens, langs=langs)         # (batch, seq) -> (batch, seq, emb_dim)
    logits = p.model.predict(h)              # (..., n_words) for the positions passed in
    xlm.save_pretrained(p, out, format="hf") # or "original", "xlm"
"""

from xlm.config import Config, ModelConfig, load_config
from xlm.data.dictionary import Dictionary
from xlm.errors import XLMError
from xlm.model.transformer import TransformerModel
from xlm.pretrained import Pretrained, load_pretrained, save_pretrained

__version__ = "0.1.0"
__all__ = [
    "Config", "Dictionary", "ModelConfig", "Pretrained", "TransformerModel", "XLMError",
    "load_config", "load_pretrained", "save_pretrained",
]
