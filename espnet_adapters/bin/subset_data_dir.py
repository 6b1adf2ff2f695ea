"""Copy a subset of a Kaldi data directory, as Kaldi's subset_data_dir.sh does.

Usage:
  python -m espnet_adapters.bin.subset_data_dir --utt-list FILE src dst
  python -m espnet_adapters.bin.subset_data_dir --spk-list FILE src dst
  python -m espnet_adapters.bin.subset_data_dir --first N src dst   (or Kaldi's: --first src N dst)
  python -m espnet_adapters.bin.subset_data_dir --last N src dst    (or Kaldi's: --last src N dst)
  python -m espnet_adapters.bin.subset_data_dir src N dst           (N utterances spread evenly)
"""

from __future__ import annotations

import argparse
from typing import Any, Sequence

from espnet_adapters.data.kaldi import subset_data_dir
from espnet_adapters.utils.cli import UserInputError, make_parser, run_main

WHAT = """\
Selection (exactly one):
  --utt-list FILE   utterances whose id is the first column of a line of FILE
                    (so a wav.scp or text of another directory works as a list)
  --spk-list FILE   all utterances of the speakers listed in FILE
  --first N         the first N utterances in sorted (LC_ALL=C) order
  --last N          the last N utterances in sorted order
  src N dst         N utterances spread evenly through the sorted list, which
                    samples all speakers rather than the first few

Ids in a list that are not in src are ignored (a warning gives the count).
Every known file is filtered: utterance files by utterance, wav.scp by
recording when segments exist, spk2gender by the remaining speakers; spk2utt
is regenerated.  dst is built beside its final place, validated, and swapped
in whole, so it is never half-written; an existing dst is replaced.
"""


def get_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = WHAT
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--utt-list", metavar="FILE", help="keep the utterances listed in FILE")
    group.add_argument("--spk-list", metavar="FILE", help="keep the speakers listed in FILE")
    group.add_argument("--first", nargs="?", const="", metavar="N", help="keep the first N utterances")
    group.add_argument("--last", nargs="?", const="", metavar="N", help="keep the last N utterances")
    parser.add_argument("dirs", nargs="+", metavar="src [N] dst", help="source dir, [count,] destination dir")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="debug logging")
    return parser


def _count(value: str) -> int:
    if not value.isdigit() or int(value) == 0:
        raise UserInputError(f"expected a positive number of utterances, got {value!r}")
    return int(value)


def _resolve(args: argparse.Namespace) -> tuple[str, str, dict[str, Any]]:
    """(src, dst, selection keyword) from both the flag and Kaldi's positional forms.

    With Kaldi's ``--first src N dst``, argparse hands ``src`` to ``--first``;
    it is moved back to the positionals here.
    """
    positional = list(args.dirs)
    for option in ("first", "last"):
        value = getattr(args, option)
        if value is None:
            continue
        if len(positional) == 2 and value.isdigit():
            return positional[0], positional[1], {option: _count(value)}
        if value:
            positional.insert(0, value)
        if len(positional) != 3:
            raise UserInputError(f"--{option}: expected --{option} N src dst or --{option} src N dst")
        return positional[0], positional[2], {option: _count(positional[1])}
    if args.utt_list is not None or args.spk_list is not None:
        if len(positional) != 2:
            raise UserInputError("expected src dst after --utt-list/--spk-list")
        selection = {"utt_list": args.utt_list} if args.utt_list is not None else {"spk_list": args.spk_list}
        return positional[0], positional[1], selection
    if len(positional) != 3:
        raise UserInputError("expected src N dst, or a selection option (see --help)")
    return positional[0], positional[2], {"num_utts": _count(positional[1])}


def _body(args: argparse.Namespace) -> int:
    src, dst, selection = _resolve(args)
    subset_data_dir(src, dst, **selection)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(get_parser(), _body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
