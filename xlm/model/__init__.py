"""The XLM transformer and its checkpoint interop."""

from xlm.model.transformer import TransformerModel

__all__ = ["TransformerModel"]
