"""Data preprocessing entry point: ``python preprocess.py --help`` (same as ``xlm-preprocess``)."""

from xlm.cli.preprocess import main

if __name__ == "__main__":
    main()
