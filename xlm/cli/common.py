"""What every command-line entry point shares: one-line errors, ``--debug`` tracebacks, progress flags.

A command's ``main(argv)`` raises :class:`XLMError` for anything the user can fix; :func:`run_cli`
prints it as ``error: ...`` on one line and exits 1. With ``--debug`` anywhere on the command line
the full traceback is printed instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import NoReturn

from xlm.errors import XLMError, XLMWarning


def one_line(text: str) -> str:
    return " ".join(str(text).split("\n")).strip()


def _fail(message: str, debug: bool, code: int = 1) -> NoReturn:
    if debug:
        traceback.print_exc()
    print(f"error: {one_line(message)}", file=sys.stderr)
    sys.exit(code)


def show_warnings_as_lines() -> None:
    """Print :class:`XLMWarning` as one ``warning: ...`` line on stderr (other warnings as Python does)."""
    import warnings

    default = warnings.showwarning
    if getattr(default, "_xlm", False):
        return

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001 - warnings' signature
        if issubclass(category, XLMWarning):
            print(f"warning: {one_line(str(message))}", file=file or sys.stderr, flush=True)
        else:
            default(message, category, filename, lineno, file, line)

    show._xlm = True  # type: ignore[attr-defined]
    warnings.showwarning = show


def run_cli(main: Callable[[list[str]], int | None], argv: Sequence[str] | None = None) -> NoReturn:
    """Run ``main(argv)`` and exit: 0 on success, 1 on a user error, 130 on Ctrl-C."""
    args = list(sys.argv[1:] if argv is None else argv)
    show_warnings_as_lines()
    debug = "--debug" in args
    try:
        code = main(args)
    except XLMError as e:
        _fail(str(e), debug)
    except KeyboardInterrupt:
        _fail("interrupted", debug, 130)
    except BrokenPipeError:
        # the reader went away (e.g. `| head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    except OSError as e:  # a file error not already turned into an XLMError
        _fail(f"{e.filename}: {e.strerror}" if e.filename else str(e), debug)
    sys.exit(code or 0)


def add_common_flags(parser: argparse.ArgumentParser, progress: bool = True) -> None:
    """``--debug`` (tracebacks) and, for long-running commands, ``--progress``/``--no-progress``."""
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    if progress:
        parser.add_argument(
            "--progress",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="progress bar on stderr (default: only when stderr is a terminal)",
        )


def progress_enabled(args: argparse.Namespace) -> bool:
    """Explicit ``--progress``/``--no-progress`` wins; otherwise show bars only on a terminal."""
    choice = getattr(args, "progress", None)
    return sys.stderr.isatty() if choice is None else bool(choice)


def log(message: str) -> None:
    """Status lines go to stderr, so stdout stays clean for data written to ``-``."""
    print(message, file=sys.stderr, flush=True)


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """What a model file may not carry: ``--codes``, ``--lowercase``/``--no-lowercase``, ``--vocab``."""
    parser.add_argument("--codes", default=None,
                        help="BPE codes the model's text was segmented with (original .pth files carry none)")
    parser.add_argument("--lowercase", action=argparse.BooleanOptionalAction, default=None,
                        help="the model's text was lowercased and stripped of accents (default: as the model says; "
                             "released XLM 1024 models: --lowercase, XLM-17/100: --no-lowercase)")
    parser.add_argument("--vocab", default=None, help="vocabulary, for a model-only Hugging Face folder")


def model_options(args: argparse.Namespace) -> dict:
    """Keyword arguments of :func:`xlm.load_pretrained` from :func:`add_model_options`' flags."""
    return {"codes": args.codes, "lowercase": args.lowercase, "vocab": args.vocab}
