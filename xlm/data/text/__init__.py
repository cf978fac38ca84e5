"""Text to tokens, the rules behind :mod:`xlm.data.tokenize`.

``normalize``: the Moses character-level scripts and the original's lowercasing; ``moses``:
``tokenizer.perl``; ``tables``: perl's character classes and the nonbreaking prefixes, as data;
``segment``: word segmenters for Thai, Chinese and Japanese.
"""
