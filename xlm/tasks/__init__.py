"""Downstream tasks: the cross-lingual benchmarks' formats, metrics and protocols on any pretrained model.

One entry point, ``python -m xlm.finetune TASK --config FILE [KEY=VALUE ...]`` (:mod:`xlm.finetune`):

- ``sentence`` (classification.py): XNLI, PAWS-X, GLUE-style TSV; pairs in the original's layout;
- ``tokens`` (tokens.py): CoNLL-2002/2003 NER and UD POS, label on each word's first sub-word;
- ``qa`` (qa.py): SQuAD v1.1 JSON (SQuAD, MLQA, XQuAD), windows and n-best span decoding;
- ``retrieval`` and ``mining`` (mining.py): Tatoeba accuracy, BUCC margin mining and F1.

Layout: ``config.py`` (strict configs), ``formats/`` (one reader per distributed format),
``text.py`` and ``inputs.py`` (text to ids, the original's input layout), ``heads.py`` (encoder +
head, which layers train), ``runner.py`` (the shared training loop), ``metrics.py``,
``results.py`` (tables), ``hf_export.py`` (Hugging Face task classes).
"""

TASKS = ("sentence", "tokens", "qa", "retrieval", "mining")
