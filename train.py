"""Pretrain an XLM model: ``python train.py --config configs/tiny.yaml [key.sub=value ...]``."""

from xlm.cli.train import main

if __name__ == "__main__":
    main()
