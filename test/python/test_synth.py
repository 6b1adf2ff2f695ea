"""The synthetic corpus: disjoint splits, stable ids, real audio, clear config errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from espnet_adapters.data.synth import (
    Speaker,
    load_synth_config,
    plan_corpus,
    read_sentences,
    synthesize,
)
from espnet_adapters.utils.cli import UserInputError

REPO = Path(__file__).resolve().parents[2]


VOICE = {"voice": "it", "noise_dbfs": -60.0}


def _speakers() -> list[Speaker]:
    config = load_synth_config(REPO / "conf" / "synth.yaml")
    return list(config.speakers)


def test_splits_share_no_speaker_and_no_sentence(tmp_path: Path) -> None:
    sentences = [f"sentence number {i} here." for i in range(100)]
    plan = plan_corpus("it", sentences, _speakers(), {"train": 50, "dev": 10, "test": 20}, tmp_path, seed=3, **VOICE)
    assert {split: len(utts) for split, utts in plan.items()} == {"train": 50, "dev": 10, "test": 20}
    speakers = {split: {u.spk_id for u in utts} for split, utts in plan.items()}
    texts = {split: {u.text for u in utts} for split, utts in plan.items()}
    for a, b in (("train", "dev"), ("train", "test"), ("dev", "test")):
        assert not speakers[a] & speakers[b]
        assert not texts[a] & texts[b]
    for utts in plan.values():
        for utt in utts:
            assert utt.utt_id.startswith(utt.spk_id + "-")


def test_test_set_does_not_depend_on_train_size(tmp_path: Path) -> None:
    sentences = [f"frase {i}." for i in range(200)]
    small = plan_corpus("it", sentences, _speakers(), {"train": 10, "dev": 5, "test": 20}, tmp_path, seed=1, **VOICE)
    large = plan_corpus("it", sentences, _speakers(), {"train": 150, "dev": 5, "test": 20}, tmp_path, seed=1, **VOICE)
    assert [u.utt_id for u in small["test"]] == [u.utt_id for u in large["test"]]


def test_too_few_sentences_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="only 3 distinct ones available"):
        plan_corpus("hi", ["a.", "b.", "c."], _speakers(), {"train": 2, "dev": 1, "test": 1}, tmp_path, seed=1, **VOICE)


def test_sentence_file_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "xx.txt"
    path.write_text("एक वाक्य है।\n\nदूसरा।\n", encoding="utf-8")
    with pytest.raises(UserInputError, match=r"xx.txt:2: empty sentence"):
        read_sentences(path)
    path.write_text("uno\r\n", encoding="utf-8")
    with pytest.raises(UserInputError, match=r"xx.txt:1: control character"):
        read_sentences(path)


def test_config_rejects_unknown_split(tmp_path: Path) -> None:
    path = tmp_path / "synth.yaml"
    path.write_text(
        "voices: {hi: hi}\nnoise_dbfs: -60\nspeakers:\n"
        "  - {name: a, variant: m1, pitch: 40, rate: 150, gender: m, split: eval}\n",
        encoding="utf-8",
    )
    with pytest.raises(UserInputError, match="split must be one of"):
        load_synth_config(path)


def test_synthesized_audio_is_speech_with_noise_floor(tmp_path: Path) -> None:
    sentences = ["भारत एक विशाल देश है।", "आज मौसम बहुत अच्छा है।", "यह एक किताब है।"]
    plan = plan_corpus("hi", sentences, _speakers(), {"train": 1, "dev": 1, "test": 1}, tmp_path, 1,
                       voice="hi", noise_dbfs=-60)
    utt = plan["test"][0]
    duration = synthesize(utt, "hi", noise_dbfs=-60)
    audio, rate = sf.read(utt.wav_path, dtype="float32")
    assert rate == 22050
    assert duration == pytest.approx(len(audio) / rate)
    assert duration > 1.0
    lead = audio[: int(0.2 * rate)]  # the padding before speech: noise, not digital silence
    assert 1e-4 < float(np.sqrt(np.mean(lead**2))) < 1e-2
    assert float(np.abs(audio).max()) > 0.1
    # Deterministic and cached: a second call reuses the file.
    mtime = utt.wav_path.stat().st_mtime_ns
    assert synthesize(utt, "hi", noise_dbfs=-60) == pytest.approx(duration, abs=1e-3)
    assert utt.wav_path.stat().st_mtime_ns == mtime


def test_sentences_equal_after_normalisation_count_once(tmp_path: Path) -> None:
    """Case and punctuation variants of one sentence never land in two splits (they would score alike)."""
    sentences = [f"Frase numero {i}." for i in range(30)] + [f"frase numero {i}" for i in range(30)]
    plan = plan_corpus("it", sentences, _speakers(), {"train": 20, "dev": 5, "test": 5}, tmp_path, seed=1, **VOICE)
    from espnet_adapters.scoring.normalize import normalize_text

    normalised = [normalize_text(u.text, "it") for utts in plan.values() for u in utts]
    assert len(normalised) == 30 and len(set(normalised)) == 30
    with pytest.raises(UserInputError, match="31 sentences requested .* only 30 distinct"):
        plan_corpus("it", sentences, _speakers(), {"train": 21, "dev": 5, "test": 5}, tmp_path, seed=1, **VOICE)


def test_the_shipped_sentence_files_plan_without_duplicates(tmp_path: Path) -> None:
    from espnet_adapters.scoring.normalize import normalize_text

    for path in sorted((REPO / "local" / "sentences").glob("*.txt")):
        lang = path.stem
        sentences = read_sentences(path)
        plan = plan_corpus(lang, sentences, _speakers(), {"train": 0, "dev": 0, "test": 0}, tmp_path, 1, **VOICE)
        assert all(not utts for utts in plan.values())
        from espnet_adapters.data.synth import unique_sentences

        kept = [normalize_text(sentences[i], lang) for i in unique_sentences(lang, sentences)]
        assert len(kept) == len(set(kept)), path


def test_audio_file_follows_the_text_and_the_voice(tmp_path: Path) -> None:
    """An edited sentence or synth setting gets a new wav name: old audio is never paired with new text."""
    speakers = _speakers()
    sizes = {"train": 1, "dev": 1, "test": 1}
    base = plan_corpus("it", ["uno due.", "tre quattro.", "cinque."], speakers, sizes, tmp_path, 1, **VOICE)
    edited = plan_corpus("it", ["uno tre.", "tre quattro.", "cinque."], speakers, sizes, tmp_path, 1, **VOICE)
    louder = plan_corpus("it", ["uno due.", "tre quattro.", "cinque."], speakers, sizes, tmp_path, 1,
                         voice="it", noise_dbfs=-40.0)
    by_id = lambda plan: {u.utt_id: u for utts in plan.values() for u in utts}  # noqa: E731
    a, b, c = by_id(base), by_id(edited), by_id(louder)
    assert a.keys() == b.keys() == c.keys()
    changed = [k for k in a if a[k].text != b[k].text]
    assert len(changed) == 1
    for key in a:
        assert (a[key].wav_path == b[key].wav_path) == (key not in changed)
        assert a[key].wav_path != c[key].wav_path


# --- The other synthesizer (Festival): dev_other / test_other ------------------------------------

def test_other_split_is_the_same_sentences_by_unseen_speakers(tmp_path: Path) -> None:
    from espnet_adapters.data.synth import load_other_config, plan_other

    sentences = [f"frase numero {i}." for i in range(60)]
    plan = plan_corpus("it", sentences, _speakers(), {"train": 30, "dev": 5, "test": 10}, tmp_path, seed=1, **VOICE)
    others = load_other_config(REPO / "conf" / "synth_other.yaml", "it")
    other = plan_other("it", plan["test"], others, tmp_path, -60.0)
    assert [u.text for u in other] == [u.text for u in plan["test"]]
    # The sentence part of the id pairs a test_other utterance with its test utterance.
    assert [u.utt_id.split("-")[1] for u in other] == [u.utt_id.split("-")[1] for u in plan["test"]]
    espeak_speakers = {u.spk_id for utts in plan.values() for u in utts}
    assert {u.spk_id for u in other} == {"it_fva", "it_fvb"} and not espeak_speakers & {u.spk_id for u in other}
    assert {u.speaker.voice for u in other} == {"lp_diphone", "pc_diphone"}  # both Italian voices in turn


def test_other_config_without_the_language_says_what_to_do(tmp_path: Path) -> None:
    from espnet_adapters.data.synth import load_other_config

    with pytest.raises(UserInputError, match=r"synth_other.yaml: no voice of the other synthesizer for language 'xx'.*"
                                             r"leave <split>_other out of --test_sets"):
        load_other_config(REPO / "conf" / "synth_other.yaml", "xx")
    bad = tmp_path / "other.yaml"
    bad.write_text("voices: {hi: [{voice: v, gender: m}]}\ntransliterate: {hi: [rot13]}\n"
                   "speakers: [{name: a, f0_mean: 120, stretch: 1.0}]\n", encoding="utf-8")
    with pytest.raises(UserInputError, match=r"other.yaml: unknown transliteration 'rot13'"):
        load_other_config(bad, "hi")


def test_gurmukhi_is_read_as_devanagari_letters_of_the_same_sound() -> None:
    from espnet_adapters.data.synth import gurmukhi_to_devanagari, strip_nukta

    assert gurmukhi_to_devanagari("ਅੰਕ ਵਾਂਗ ਮੁੱਲ ਹੈ।") == "अंक वांग मुल्ल है।"  # tippi -> anusvara, addak doubles
    assert gurmukhi_to_devanagari("ਜਾਇਜ਼ ਨਹੀਂ") == "जाइज़ नहीं"
    assert strip_nukta(gurmukhi_to_devanagari("ਜਾਇਜ਼")) == "जाइज"
    assert gurmukhi_to_devanagari("abc 12") == "abc 12"


@pytest.mark.parametrize("lang", ["hi", "it", "pa", "te"])
def test_festival_speaks_every_language_of_the_recipe(tmp_path: Path, lang: str) -> None:
    """Festival and its voices come with tools/install.sh; a sentence with what broke them once
    (a nukta for the Hindi voice, an accented letter for the latin-1 Italian ones)."""
    from espnet_adapters.data.synth import load_other_config, plan_other

    sentence = {"hi": "दस्तावेज़ नहीं खोल सकता है।", "it": "Si può modificare l'elenco dei termini.",
                "pa": "ਸਰਟੀਫਿਕੇਟ ਹਾਲੇ ਜਾਇਜ਼ ਨਹੀਂ ਹੈ।", "te": "భ్రమణం కొరకు కోణాన్ని ఎంపికచేయి."}[lang]
    plan = plan_corpus(lang, [sentence, "x.", "y."], _speakers(), {"train": 1, "dev": 1, "test": 1}, tmp_path, 1,
                       voice=lang, noise_dbfs=-60)
    test = [u for u in plan["test"] + plan["dev"] + plan["train"] if u.text == sentence]
    for utt in plan_other(lang, test * 2, load_other_config(REPO / "conf" / "synth_other.yaml", lang), tmp_path, -60):
        duration = synthesize(utt, lang, noise_dbfs=-60)
        audio, rate = sf.read(utt.wav_path, dtype="float32")
        assert rate == 16000 and duration > 1.0
        assert float(np.abs(audio).max()) > 0.1


@pytest.mark.parametrize("lang", ["it", "hi"])
def test_festival_speaks_every_sentence_of_a_text(tmp_path: Path, lang: str) -> None:
    """A test sentence of two sentences is spoken to its end: the Italian voices, given a flat intonation
    model that declines over the whole text, once fell silent after the first sentence (the
    reference then had words the audio did not)."""
    from espnet_adapters.data.synth import load_other_config, plan_other

    text = {"it": "Vuoi davvero annullare la registrazione? Tutti i passaggi registrati fino a questo punto "
                  "andranno persi.",
            "hi": "क्या आप सचमुच रिकॉर्डिंग रद्द करना चाहते हैं? अब तक रिकॉर्ड किए गए सभी चरण इस बिंदु पर "
                  "खो जाएँगे।"}[lang]
    plan = plan_corpus(lang, [text, "x.", "y."], _speakers(), {"train": 1, "dev": 1, "test": 1}, tmp_path, 1,
                       voice=lang, noise_dbfs=-60)
    utts = [u for utts in plan.values() for u in utts if u.text == text]
    for utt in plan_other(lang, utts * 2, load_other_config(REPO / "conf" / "synth_other.yaml", lang), tmp_path, -60):
        synthesize(utt, lang, noise_dbfs=-60)
        audio, rate = sf.read(utt.wav_path, dtype="float32")
        frames = audio[: len(audio) // (rate // 10) * (rate // 10)].reshape(-1, rate // 10)
        energy = 10 * np.log10((frames**2).mean(axis=1) + 1e-12)
        speech = np.flatnonzero(energy > energy.max() - 35)
        # Speech runs to the last second (0.25 s of padding and the voice's final pause; the silent
        # Italian audio ended after 3 of its 7 s) and fills most of the clip.
        assert speech[-1] >= len(energy) - 10 and len(speech) > 0.7 * len(energy), (utt.utt_id, len(energy), speech)


def test_a_voice_that_cannot_read_the_text_names_the_utterance(tmp_path: Path) -> None:
    from espnet_adapters.data.synth import load_other_config, plan_other

    plan = plan_corpus("it", ["Costa 5 €.", "x.", "y."], _speakers(), {"train": 1, "dev": 1, "test": 1}, tmp_path, 1,
                       **VOICE)
    utt = [u for utts in plan.values() for u in utts if "€" in u.text]
    other = plan_other("it", utt, load_other_config(REPO / "conf" / "synth_other.yaml", "it"), tmp_path, -60)[0]
    with pytest.raises(UserInputError, match=r"it_fva-it0000\d: voice lp_diphone reads latin-1, which cannot encode '€'"):
        synthesize(other, "it", noise_dbfs=-60)
    assert not other.wav_path.exists()
