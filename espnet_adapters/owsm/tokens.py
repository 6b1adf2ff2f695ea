"""Token list and BPE model of an OWSM-style model trained here (the tiny offline OWSM).

A released OWSM brings its own token list and BPE model, which fine-tuning must
reuse unchanged.  A model trained from scratch by this project gets them from
here, built the way OWSM's are: a sentencepiece unigram model whose user-defined
symbols are the special tokens (``<na>``, ``<nospeech>``, the language tokens,
the task tokens and the timestamps ``<0.00>`` ... ``<30.00>``), and a token
list ``<blank> <unk>`` + the sentencepiece pieces + ``<sos> <eos> <sop>``.  The
timestamps must be contiguous ids: ESPnet's S2T preprocessor selects them by
id range.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

from espnet_adapters.owsm.data import ASR_TOKENS, ISO639_3, NO_PREVIOUS
from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.utils.fileio import atomic_write

NO_SPEECH = "<nospeech>"
TIMESTAMPS = tuple(f"<{i * 0.02:.2f}>" for i in range(1501))  # <0.00> ... <30.00>, step 20 ms
FRAME_TOKENS = ("<sos>", "<eos>", "<sop>")


def special_tokens() -> list[str]:
    """OWSM's special tokens, in the order they become sentencepiece user-defined symbols."""
    langs = [f"<{code}>" for code in sorted(set(ISO639_3.values()))]
    tasks = [token + ">" for token in ASR_TOKENS.split(">") if token]
    return [NO_PREVIOUS, NO_SPEECH, *langs, *tasks, *TIMESTAMPS]


def train_bpe(texts: Iterable[str], model_path: Path, vocab_size: int) -> list[str]:
    """Train the sentencepiece model at ``model_path`` (a ``.model`` file); return the token list.

    ``texts`` are plain transcripts (``text.ctc``).  ``vocab_size`` counts the
    special tokens too, as sentencepiece does.
    """
    import sentencepiece as spm

    sentences = [line for line in texts if line.strip()]
    if not sentences:
        raise UserInputError(f"{model_path}: no training text for the BPE model")
    specials = special_tokens()
    if vocab_size <= len(specials) + 3:
        raise UserInputError(f"--vocab_size {vocab_size} leaves no room beside {len(specials)} special tokens")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=model, vocab_size=vocab_size, model_type="unigram",
        character_coverage=1.0, user_defined_symbols=specials, hard_vocab_limit=False,
        minloglevel=2,
    )
    with atomic_write(model_path, "wb") as handle:
        handle.write(model.getvalue())
    processor = spm.SentencePieceProcessor(model_file=str(model_path))
    pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
    return ["<blank>", "<unk>", *(p for p in pieces if p not in ("<unk>", "<s>", "</s>")), *FRAME_TOKENS]


def write_token_list(tokens: list[str], path: Path) -> None:
    """One token per line, as ESPnet's ``token_list`` files."""
    if len(set(tokens)) != len(tokens):
        raise UserInputError(f"{path}: duplicate tokens")
    with atomic_write(path) as handle:
        handle.writelines(f"{token}\n" for token in tokens)
