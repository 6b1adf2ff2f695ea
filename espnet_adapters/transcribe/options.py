"""The options shared by the commands that load a :class:`~.engine.Transcriber` (transcribe, demo)."""

from __future__ import annotations

import argparse
from pathlib import Path

from espnet_adapters.publish.export import load_export
from espnet_adapters.routing.decode import adapter_families, load_adapter_dirs, parse_adapter_arg
from espnet_adapters.transcribe.engine import ROUTES, RouteOptions, Transcriber, WindowOptions
from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.whisper.decode import add_search_arguments, load_decode_options, search_overrides

DEFAULT_DECODE_CONFIG = Path(__file__).resolve().parents[2] / "conf" / "decode" / "default.yaml"


def add_transcriber_arguments(parser: argparse.ArgumentParser) -> None:
    """Adapters, LID, routing, windows, model, resources and the search options."""
    parser.add_argument("--adapters", type=Path, default=None, help="An export_adapters folder (manifest.json).")
    parser.add_argument("--adapter", type=parse_adapter_arg, action="append", default=None, metavar="LANG=DIR",
                        help="A language's adapter dir, instead of --adapters; repeat per language.")
    parser.add_argument("--lid_dir", type=Path, default=None, help="The LID (train_lid), with --adapter.")
    parser.add_argument("--families", type=Path, default=None,
                        help="With --adapter: conf/families.yaml, for --route hierarchical (an export has them).")
    parser.add_argument("--route", choices=ROUTES, default="threshold", help="How a window's adapters are chosen.")
    parser.add_argument("--lang", default=None, help="Force this language's adapter (no LID).")
    parser.add_argument("--tau", type=float, default=None,
                        help="threshold: hard routing when max p >= tau (default: the export's, chosen on dev; else 0.5).")
    parser.add_argument("--top_k", type=int, default=None, help="threshold: adapters mixed below tau (default 2).")
    parser.add_argument("--whisper_model", default=None,
                        help="The base model (default: the export's; else whisper-base).")
    parser.add_argument("--window_seconds", type=float, default=30.0, help="Longest window decoded at once.")
    parser.add_argument("--search_seconds", type=float, default=5.0,
                        help="A window ends at the quietest 0.1 s within this many seconds of its limit.")
    parser.add_argument("--ngpu", type=int, default=0, help="0: the CPU; 1: a CUDA device.")
    parser.add_argument("--num_threads", type=int, default=2, help="torch CPU threads.")
    add_search_arguments(parser)


def transcriber_from_args(args: argparse.Namespace) -> Transcriber:
    """Load the model, adapters and LID the options name (the export's defaults where a flag is absent)."""
    if (args.adapters is None) == (args.adapter is None):
        raise UserInputError("give the adapters either as --adapters EXPORT_DIR or as --adapter LANG=DIR ...")
    if not 0 < args.window_seconds <= 30:
        raise UserInputError(f"--window_seconds {args.window_seconds}: Whisper reads at most 30 s")
    if args.adapters is not None:
        export = load_export(args.adapters)
        adapters, lid_dir = export.adapters, export.lid_dir
        whisper_model = args.whisper_model or export.whisper_model or "whisper-base"
        tau, top_k, config, families = export.tau, export.top_k, export.decode_config, export.families
    else:
        adapters, lid_dir = load_adapter_dirs(args.adapter), args.lid_dir
        whisper_model, tau, top_k, config = args.whisper_model or "whisper-base", None, None, DEFAULT_DECODE_CONFIG
        families = None if args.families is None else dict(zip(adapters, adapter_families(args.families, list(adapters))))
    options = load_decode_options(args.decode_config or config, search_overrides(args))
    routing = RouteOptions(args.route, args.lang, tau=args.tau if args.tau is not None else tau or 0.5,
                           top_k=args.top_k or top_k or 2, families=families)
    windows = WindowOptions(args.window_seconds, min(args.search_seconds, args.window_seconds / 2))
    return Transcriber(adapters, lid_dir, whisper_model, options, routing, windows, args.ngpu)
