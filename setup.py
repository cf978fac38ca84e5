from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="xlm",
    version="0.1.0",
    description="Cross-lingual language-model pretraining (XLM: MLM, CLM, TLM), modern and tested",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["xlm", "xlm.*"]),
    py_modules=["train", "preprocess"],
    install_requires=[
        "torch>=2.4",
        "numpy>=1.24",
        "pyyaml>=6.0",
        "tqdm>=4.60",
    ],
    extras_require={
        "spm": ["sentencepiece>=0.1.99"],
        "hf": ["transformers>=4.40", "safetensors>=0.4", "sacremoses>=0.1"],  # XLMTokenizer needs sacremoses
        # word segmenters for languages without spaces (tokenize --lang th / zh / ja)
        "th": ["pythainlp>=3.0"],
        "zh": ["jieba>=0.42"],
        "ja": ["fugashi>=1.3", "unidic-lite>=1.0.8"],
        "segment": ["pythainlp>=3.0", "jieba>=0.42", "fugashi>=1.3", "unidic-lite>=1.0.8"],
        "tensorboard": ["tensorboard>=2.10"],
        "mt": ["sacrebleu>=2.0", "sacremoses>=0.1"],  # BLEU (xlm.bleu) and detokenized output (python -m xlm.translate)
        "tasks": ["seqeval>=1.2", "scikit-learn>=1.0", "scipy>=1.7"],  # downstream metrics (python -m xlm.finetune)
        "test": [
            "pytest>=7",
            "pytest-xdist>=3",  # the README runs the suite with -n auto
            "hypothesis>=6",
            "transformers>=4.40",
            "safetensors>=0.4",
            "sacremoses>=0.1",
            "sentencepiece>=0.1.99",
            "tensorboard>=2.10",
            "pythainlp>=3.0",  # th and zh segmenter tests; ja (fugashi + a 47 MB dictionary) is skipped
            "jieba>=0.42",
            "seqeval>=1.2",
            "scikit-learn>=1.0",
            "scipy>=1.7",
            "sacrebleu>=2.0",
        ],
        "dev": ["ruff>=0.4", "pytest>=7", "hypothesis>=6", "cython>=3"],
    },
    entry_points={
        "console_scripts": [
            "xlm-train=xlm.cli.train:main",
            "xlm-preprocess=xlm.cli.preprocess:main",
        ],
    },
)
