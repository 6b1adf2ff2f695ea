"""Writing, fixing and subsetting Kaldi data directories, each through a validated temporary directory.

Every writer builds the directory's files sorted in a temporary directory,
validates it there (``kaldi_validate``) and only then swaps it onto the
destination, so readers never see a half-written or invalid directory; a
result that would not validate is refused and the destination left as it was.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from espnet_adapters.data.kaldi_maps import (
    BLANK, PathLike, Problems, parse_entries, read_bytes, read_map, spk2utt_from_utt2spk, write_map,
)
from espnet_adapters.data.kaldi_validate import KNOWN_FILES, dir_problems, is_utt_level
from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.utils.fileio import atomic_dir

logger = logging.getLogger(__name__)

BACKUP_DIR = ".backup"


# --------------------------------------------------------------------------- write


def _spk2utt_map(utt2spk: Mapping[str, str]) -> dict[str, str]:
    ordered = dict(sorted(utt2spk.items()))
    return {spk: " ".join(utts) for spk, utts in spk2utt_from_utt2spk(ordered).items()}


def _format_seconds(value: float | str) -> str:
    """Seconds with up to microsecond precision and no exponent (awk-safe)."""
    if isinstance(value, str):
        return value
    return f"{float(value):.6f}".rstrip("0").rstrip(".")


def _format_segment(value: str | tuple[str, float, float]) -> str:
    if isinstance(value, str):
        return value
    recording, start, end = value
    return f"{recording} {_format_seconds(start)} {_format_seconds(end)}"


def write_data_dir(
    path: PathLike,
    *,
    wav_scp: Mapping[str, str],
    text: Mapping[str, str],
    utt2spk: Mapping[str, str],
    utt2lang: Mapping[str, str] | None = None,
    utt2dur: Mapping[str, float | str] | None = None,
    spk2gender: Mapping[str, str] | None = None,
    utt2category: Mapping[str, str] | None = None,
    segments: Mapping[str, str | tuple[str, float, float]] | None = None,
) -> None:
    """Write a complete data directory (spk2utt derived from utt2spk), or nothing.

    Files are written sorted into a temporary directory, validated there, and
    only then swapped into place, so readers never see a half-written or
    invalid directory.  Raises :class:`UserInputError` listing the problems if
    the result would not validate; ``path`` is then left as it was.
    ``segments`` values are ``"rec start end"`` or ``(rec, start, end)``.
    """
    files: dict[str, Mapping[str, str]] = {
        "wav.scp": wav_scp,
        "text": text,
        "utt2spk": utt2spk,
        "spk2utt": _spk2utt_map(utt2spk),
    }
    optional: dict[str, Mapping[str, str] | None] = {
        "utt2lang": utt2lang,
        "utt2dur": None if utt2dur is None else {k: _format_seconds(v) for k, v in utt2dur.items()},
        "spk2gender": spk2gender,
        "utt2category": utt2category,
        "segments": None if segments is None else {k: _format_segment(v) for k, v in segments.items()},
    }
    files.update({name: mapping for name, mapping in optional.items() if mapping is not None})
    _install(Path(path), files, no_text=False)


# (utterance, its wav.scp entry, its duration or None) -> the copy's (entry, duration or None).
CopyMaker = Callable[[str, str, float | None], tuple[str, float | None]]
COPIED_FILES = ("utt2lang", "utt2dur", "utt2category", "spk2gender")


def copy_data_dir(source: PathLike, target: PathLike, copies: Mapping[str, CopyMaker | None]) -> int:
    """Write ``target`` with one copy of ``source`` per entry of ``copies`` (Kaldi's perturbed dirs).

    ``copies`` maps a prefix (``"sp0.9-"``, ``"aug1-"``; ``""`` for the original) to a function
    of (utterance, wav.scp entry, duration) giving the copy's (entry, duration), or None for an
    unchanged copy.  Utterance and speaker ids get the prefix
    (a perturbed speaker is a new speaker); text, language and category are the original's.
    Returns the number of utterances written.
    """
    source = Path(source)
    if (source / "segments").exists():
        raise UserInputError(f"{source}/segments: perturb after formatting segments into recordings")
    wav, text, utt2spk = (read_map(source / name) for name in ("wav.scp", "text", "utt2spk"))
    optional = {name: read_map(source / name) for name in COPIED_FILES if (source / name).exists()}
    out: dict[str, dict[str, str]] = {name: {} for name in ("wav.scp", "text", "utt2spk", *optional)}
    for prefix, make in copies.items():
        for utt, spk in utt2spk.items():
            dur = float(optional["utt2dur"][utt]) if "utt2dur" in optional else None
            entry, dur = (wav[utt], dur) if make is None else make(utt, wav[utt], dur)
            new = prefix + utt
            out["utt2spk"][new], out["text"][new], out["wav.scp"][new] = prefix + spk, text[utt], entry
            for name in ("utt2lang", "utt2category"):
                if name in optional:
                    out[name][new] = optional[name][utt]
            if dur is not None:
                out["utt2dur"][new] = f"{dur:.3f}" if make is not None else optional["utt2dur"][utt]
        for spk, gender in optional.get("spk2gender", {}).items():
            out["spk2gender"][prefix + spk] = gender
    write_data_dir(target, wav_scp=out["wav.scp"], text=out["text"], utt2spk=out["utt2spk"],
                   **{name.replace(".", "_"): values for name, values in out.items() if name in optional})
    return len(out["text"])


def _install(
    target: Path,
    files: Mapping[str, Mapping[str, str]],
    *,
    no_text: bool,
    prepare: Callable[[Path], None] | None = None,
) -> None:
    """Build ``files`` in a temporary directory, validate it, swap it onto ``target``."""
    with atomic_dir(target) as tmp:
        if prepare is not None:
            prepare(tmp)
        for name, mapping in files.items():
            write_map(tmp / name, mapping)
        problems = dir_problems(tmp, str(target), no_text=no_text, check_audio=False)
        if problems:
            raise UserInputError(_refusal(target, problems))
    logger.info("wrote %s (%d utterances)", target, len(files["utt2spk"]))


def _refusal(target: Path, problems: list[str], shown: int = 20) -> str:
    listed = "\n  ".join(problems[:shown])
    more = f"\n  ... and {len(problems) - shown} more" if len(problems) > shown else ""
    return f"{target}: not written, the result would be invalid ({len(problems)} problems):\n  {listed}{more}"


# --------------------------------------------------------------------------- fix and subset


def _restrict(maps: Mapping[str, Mapping[str, str]], utts: set[str]) -> dict[str, dict[str, str]]:
    """The directory restricted to ``utts``.

    Utterance files are filtered; wav.scp keeps the recordings the kept
    segments use (when segments exist); spk2gender keeps the kept speakers;
    spk2utt is regenerated from the kept utt2spk.
    """
    out = {
        name: {key: value for key, value in mapping.items() if key in utts}
        for name, mapping in maps.items()
        if is_utt_level(name, maps)
    }
    if "segments" in maps and "wav.scp" in maps:
        recordings = {value.split()[0] for value in out["segments"].values()}
        out["wav.scp"] = {key: value for key, value in maps["wav.scp"].items() if key in recordings}
    out["spk2utt"] = _spk2utt_map(out["utt2spk"])
    if "spk2gender" in maps:
        out["spk2gender"] = {key: value for key, value in maps["spk2gender"].items() if key in out["spk2utt"]}
    return out


def _speakers(maps: Mapping[str, Mapping[str, str]]) -> set[str]:
    return set(maps["utt2spk"].values()) | set(maps.get("spk2utt", {})) | set(maps.get("spk2gender", {}))


def fix_data_dir(path: PathLike) -> dict[str, int]:
    """Repair what Kaldi's fix_data_dir.sh repairs; return counts of what was removed.

    Sorts every file, drops exact duplicate lines, empty lines and empty
    transcripts, keeps only utterances present in every utterance-level file
    (and whose recording is in wav.scp), keeps only used recordings and
    speakers, and regenerates spk2utt.  Originals of rewritten files go to
    ``path/.backup/``; other entries of the directory are kept (hard-linked).
    Raises :class:`UserInputError` for what it cannot decide (conflicting
    duplicate keys, CR, invalid UTF-8) or if the result still does not
    validate (e.g. utt2spk not sortable by speaker, NBSP in text); the
    directory is then left untouched.
    """
    directory = Path(path)
    counts = dict.fromkeys(
        ("utterances", "recordings", "speakers", "empty_transcripts", "duplicate_lines", "empty_lines"), 0
    )
    maps = {name: _read_for_fix(directory, name, counts) for name in KNOWN_FILES if (directory / name).is_file()}
    if "utt2spk" not in maps:
        raise UserInputError(f"{directory / 'utt2spk'}: required file is missing")
    if "text" in maps:
        empty = [key for key, value in maps["text"].items() if not value]
        counts["empty_transcripts"] = len(empty)
        maps["text"] = {key: value for key, value in maps["text"].items() if value}
    keep = _utterances_in_all(maps)
    fixed = _restrict(maps, keep)
    counts["utterances"] = len(set().union(*(m for name, m in maps.items() if is_utt_level(name, maps))) - keep)
    if "segments" in maps and "wav.scp" in maps:
        counts["recordings"] = len(maps["wav.scp"]) - len(fixed["wav.scp"])
    counts["speakers"] = len(_speakers(maps) - _speakers(fixed))

    def prepare(tmp: Path) -> None:
        _carry_over(directory, tmp, rewritten=set(fixed))

    _install(directory, fixed, no_text="text" not in maps, prepare=prepare)
    removed = ", ".join(f"{n} {what}" for what, n in counts.items() if n) or "nothing"
    logger.info("fixed %s: removed %s; originals in %s", directory, removed, directory / BACKUP_DIR)
    return counts


def _read_for_fix(directory: Path, name: str, counts: dict[str, int]) -> dict[str, str]:
    """Read leniently: empty lines and exact duplicate lines are dropped and counted."""
    label = str(directory / name)
    problems = Problems()
    entries = parse_entries(label, read_bytes(directory / name, label), problems)
    fatal = problems.first(ignore=BLANK)
    if fatal is not None:
        raise UserInputError(f"{fatal} (fix_data_dir cannot repair this)")
    counts["empty_lines"] += problems.count(BLANK)
    mapping: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for number, key, value in entries:
        if key not in mapping:
            mapping[key], first_line[key] = value, number
        elif mapping[key] == value:
            counts["duplicate_lines"] += 1
        else:
            raise UserInputError(
                f"{label}:{number}: duplicate key {key!r} with a value different from line"
                f" {first_line[key]} (fix_data_dir cannot choose)"
            )
    if name != "text":
        mapping = {key: value for key, value in mapping.items() if value}
    return mapping


def _utterances_in_all(maps: Mapping[str, Mapping[str, str]]) -> set[str]:
    """Utterances listed in every utterance-level file whose recording exists."""
    keep = set(maps["utt2spk"])
    for name, mapping in maps.items():
        if is_utt_level(name, maps):
            keep &= mapping.keys()
    if "segments" in maps and "wav.scp" in maps:
        keep = {utt for utt in keep if maps["segments"][utt].split()[0] in maps["wav.scp"]}
    return keep


def _carry_over(source: Path, tmp: Path, *, rewritten: set[str]) -> None:
    """Keep every other entry of ``source`` in ``tmp`` and back up the rewritten files."""
    for entry in source.iterdir():
        if entry.name not in rewritten:
            _link_tree(entry, tmp / entry.name)
    backup = tmp / BACKUP_DIR
    backup.mkdir(exist_ok=True)
    for name in sorted(rewritten):
        if (source / name).is_file():
            (backup / name).unlink(missing_ok=True)
            _link_or_copy(source / name, backup / name)


def _link_tree(source: Path, target: Path) -> None:
    if source.is_symlink():
        os.symlink(os.readlink(source), target)
    elif source.is_dir():
        shutil.copytree(source, target, symlinks=True, copy_function=_link_or_copy)
    else:
        _link_or_copy(source, target)


def _link_or_copy(source: PathLike, target: PathLike) -> None:
    """Hard-link (cheap for large feature archives), copying where links fail."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def subset_data_dir(
    src: PathLike,
    dst: PathLike,
    *,
    utt_list: Iterable[str] | PathLike | None = None,
    spk_list: Iterable[str] | PathLike | None = None,
    first: int | None = None,
    last: int | None = None,
    num_utts: int | None = None,
) -> None:
    """Write the subset of ``src`` selected by exactly one option to ``dst``.

    Semantics of Kaldi's subset_data_dir.sh: ``utt_list``/``spk_list`` are ids
    or a file whose first column holds them (ids not in ``src`` are ignored);
    ``first``/``last`` take the first/last N utterances in sorted order;
    ``num_utts`` takes N utterances spread evenly through the sorted list.
    Every known file is filtered (wav.scp by recording when segments exist)
    and ``dst`` is replaced atomically, after validation.
    """
    source, target = Path(src), Path(dst)
    if source.resolve() == target.resolve():
        raise UserInputError(f"{dst}: destination is the source directory")
    maps = {name: read_map(source / name) for name in KNOWN_FILES if (source / name).is_file()}
    if "utt2spk" not in maps:
        raise UserInputError(f"{source / 'utt2spk'}: required file is missing")
    keep = _select(source, maps["utt2spk"], utt_list=utt_list, spk_list=spk_list,
                   first=first, last=last, num_utts=num_utts)
    if not keep:
        raise UserInputError(f"{src}: the selection matches no utterance")
    _install(target, _restrict(maps, keep), no_text="text" not in maps)


def _select(
    source: Path,
    utt2spk: Mapping[str, str],
    *,
    utt_list: Iterable[str] | PathLike | None,
    spk_list: Iterable[str] | PathLike | None,
    first: int | None,
    last: int | None,
    num_utts: int | None,
) -> set[str]:
    """The utterances chosen by the one given selection option."""
    options = {"utt_list": utt_list, "spk_list": spk_list, "first": first, "last": last, "num_utts": num_utts}
    given = [name for name, value in options.items() if value is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of {', '.join(options)}; got {given or 'none'}")
    if utt_list is not None:
        wanted = _ids(utt_list)
        _log_unknown(wanted, utt2spk.keys(), "utterances", source)
        return wanted & utt2spk.keys()
    if spk_list is not None:
        wanted = _ids(spk_list)
        _log_unknown(wanted, set(utt2spk.values()), "speakers", source)
        return {utt for utt, spk in utt2spk.items() if spk in wanted}
    return set(_take(sorted(utt2spk), source, first=first, last=last, num_utts=num_utts))


def _take(utts: list[str], source: Path, *, first: int | None, last: int | None, num_utts: int | None) -> list[str]:
    wanted = next(n for n in (first, last, num_utts) if n is not None)
    if not 0 < wanted <= len(utts):
        raise UserInputError(f"{source}: cannot select {wanted} utterances out of {len(utts)}")
    if first is not None:
        return utts[:wanted]
    if last is not None:
        return utts[-wanted:]
    return [utts[i * len(utts) // wanted] for i in range(wanted)]


def _ids(ids: Iterable[str] | PathLike) -> set[str]:
    """Ids given directly, or the first column of a list file (a str is a path)."""
    if not isinstance(ids, (str, os.PathLike)):
        return set(ids)
    label = str(ids)
    problems = Problems()
    entries = parse_entries(label, read_bytes(Path(ids), label), problems)
    fatal = problems.first(ignore=BLANK)
    if fatal is not None:
        raise UserInputError(fatal)
    return {key for _, key, _ in entries}


def _log_unknown(wanted: set[str], known: Iterable[str], what: str, source: Path) -> None:
    unknown = wanted - set(known)
    if unknown:
        logger.warning("%d of %d listed %s are not in %s, e.g. %r", len(unknown), len(wanted), what,
                       source, min(unknown))
