"""Conventions shared by every ``espnet_adapters.bin`` entry point.

Every entry point has ``get_parser()`` and ``main(argv=None) -> int``.  ``main``
calls :func:`setup_logging` (library modules only ever use
``logging.getLogger(__name__)``), logs its own command line so a log file says
how it was produced, and turns :class:`UserInputError` into a one-line message
and exit status 1 instead of a traceback: bad input must be reported by file
and line, not by a stack trace from deep inside a library.  An ``OSError``
that names a file (an output dir that cannot be created, a missing or
unreadable input) is reported the same way, with the file and the system's
reason (its traceback is logged at debug level).
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from typing import Callable, Sequence

LOG_FORMAT = "%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s"


class UserInputError(Exception):
    """An error in the user's data or options, reported without a traceback.

    The message should name the offending file (and line, where there is one):
    ``data/hi_test/text:12: empty transcript``.
    """


def str2bool(value: str) -> bool:
    """Parse ``true``/``false`` strictly, as Kaldi's parse_options.sh does."""
    lowered = value.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keep the layout of the module docstring (lists of outputs) and show defaults."""


def make_parser(description: str | None) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` whose ``--help`` is the module docstring plus every option's default."""
    return argparse.ArgumentParser(description=description, formatter_class=HelpFormatter)


def setup_logging(verbose: int = 0) -> None:
    """Configure the root logger in the entry point, never in a library.

    A root logger that has handlers already (pytest's capture, an embedding
    program) is left alone, only its level is set.
    """
    level = logging.DEBUG if verbose > 0 else logging.INFO
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr)
    logging.getLogger().setLevel(level)


def os_error_message(err: OSError) -> str:
    """``path: reason`` for a file-system error (both paths of a failed rename or link)."""
    where = str(err.filename) if err.filename2 is None else f"{err.filename} -> {err.filename2}"
    return f"{where}: {err.strerror or err}"


def run_main(
    parser: argparse.ArgumentParser,
    body: Callable[[argparse.Namespace], int | None],
    argv: Sequence[str] | None,
) -> int:
    """Parse ``argv``, log the command line, run ``body`` and map errors to exit codes."""
    args = parser.parse_args(argv)
    setup_logging(getattr(args, "verbose", 0))
    shown = sys.argv[1:] if argv is None else list(argv)
    logging.getLogger(__name__).info("%s %s", parser.prog, shlex.join(shown))
    try:
        status = body(args)
    except UserInputError as err:
        logging.getLogger(__name__).error("%s", err)
        return 1
    except OSError as err:
        if err.filename is None:  # not about a file the user named: a real failure, with its traceback
            raise
        logging.getLogger(__name__).debug("traceback", exc_info=True)
        logging.getLogger(__name__).error("%s", os_error_message(err))
        return 1
    return 0 if status is None else int(status)
