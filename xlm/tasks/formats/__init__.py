"""Readers of the benchmarks' distributed formats: sentence.py, tokens.py, squad.py, bitext.py."""
