"""Bad input, as a new user gives it: every case ends with a clear message and no damage.

Each case asserts what the user sees: a non-zero exit, a message naming the file (and the line
where there is one) or the stage to re-run, no Python traceback, and no output left behind
half-written (or, for skips, a logged skip with its count).  The entry points are called as the
stage scripts call them; the recipe cases run ./run.sh in one small recipe (Italian, 3 / 2 / 2
utterances, stages 1-4 made once) and put back what they broke.  The options and config files
checked before stage 1 are in test_recipe_options.py (17 cases); the kill -9 and resume loop is
test_recipe_resume.py.
"""

from __future__ import annotations

import fcntl
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fixtures.recipe import new_recipe, recipe_env, run_recipe

REPO = Path(__file__).resolve().parents[2]
FINISHED = re.compile(r"\(adapt\.sh:\d+:main\) Successfully finished")
SMALL = ("--train_utts", "3", "--dev_utts", "2", "--test_utts", "2", "--eval_langs", "", "--nj", "1")


def _entry(program: str, *args: str, cwd: Path) -> str:
    """``python -m espnet_adapters.bin.PROGRAM ARGS`` fails cleanly (exit 1, no traceback); its output."""
    result = subprocess.run([sys.executable, "-m", f"espnet_adapters.bin.{program}", *map(str, args)], cwd=cwd,
                            capture_output=True, text=True, timeout=600, check=False)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "Traceback" not in out, out
    return out


def _run_fails(recipe: Path, *args: str) -> str:
    """./run.sh SMALL ARGS fails, says so with the stage, never "Successfully finished"; its output."""
    result = subprocess.run(["./run.sh", *SMALL, *args], cwd=recipe, env=recipe_env(), capture_output=True,
                            text=True, timeout=900, check=False)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert not FINISHED.search(out), out  # (tools/install.sh, run first, says it for itself)
    assert "Error: ended with exit code" in out, out
    assert "Traceback" not in out, out
    return out


@contextmanager
def _edited(path: Path, content: str) -> Iterator[None]:
    """``path`` holds ``content`` for the duration (its modification time moves, as with an editor)."""
    saved = path.read_bytes()
    path.write_text(content, encoding="utf-8")
    try:
        yield
    finally:
        path.write_bytes(saved)


@contextmanager
def _moved_away(path: Path) -> Iterator[None]:
    """``path`` is gone for the duration."""
    aside = path.with_name(path.name + ".aside")
    path.rename(aside)
    try:
        yield
    finally:
        aside.rename(path)


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Italian, stages 1-4 (data, format, features) on a few utterances."""
    recipe = new_recipe(tmp_path_factory.mktemp("bad") / "adapt1", "it")
    run_recipe(recipe, *SMALL, "--stop_stage", "4")
    return recipe


@pytest.fixture()
def data_dir(recipe: Path, tmp_path: Path) -> Path:
    """A copy of the formatted Italian test set (real audio), free to break."""
    copy = tmp_path / "it_test"
    shutil.copytree(recipe / "dump" / "raw" / "it_test", copy)
    return copy


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


# --- entry points ------------------------------------------------------------------------------

def test_score_out_dir_under_a_file(data_dir: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x\n")
    out = _entry("score", "--ref_text", data_dir / "text", "--hyp_text", data_dir / "text", "--lang", "it",
                 "--out_dir", blocker / "score", cwd=tmp_path)
    assert f"{blocker}/score" in out and "Not a directory" in out


def test_score_missing_hypotheses(data_dir: Path, tmp_path: Path) -> None:
    out = _entry("score", "--ref_text", data_dir / "text", "--hyp_text", tmp_path / "no_hyp", "--lang", "it",
                 "--out_dir", tmp_path / "score", cwd=tmp_path)
    assert f"{tmp_path / 'no_hyp'}: cannot read" in out
    assert not (tmp_path / "score" / "scores.json").exists()


def test_score_duplicate_hypothesis(data_dir: Path, tmp_path: Path) -> None:
    first = _lines(data_dir / "text")[0]
    hyp = tmp_path / "hyp"
    hyp.write_text(f"{first}\n{first}\n", encoding="utf-8")
    out = _entry("score", "--ref_text", data_dir / "text", "--hyp_text", hyp, "--lang", "it",
                 "--out_dir", tmp_path / "score", cwd=tmp_path)
    assert f"{hyp}:2:" in out and "duplicate" in out


def test_decode_missing_model_dir(data_dir: Path, tmp_path: Path) -> None:
    out = _entry("whisper_decode", "--data_dir", data_dir, "--out_dir", tmp_path / "out",
                 "--whisper_model", tmp_path / "no_model", cwd=tmp_path)
    assert f"--whisper_model {tmp_path / 'no_model'}: no such directory" in out
    assert not (tmp_path / "out").exists()


def test_features_missing_model_dir(data_dir: Path, tmp_path: Path) -> None:
    out = _entry("dump_feats", "--data_dir", data_dir, "--out_dir", tmp_path / "out",
                 "--whisper_model", tmp_path / "no_model", cwd=tmp_path)
    assert "no such directory" in out and not (tmp_path / "out").exists()


def test_decode_language_whisper_lacks(data_dir: Path, tmp_path: Path) -> None:
    utts = [line.split()[0] for line in _lines(data_dir / "utt2lang")]
    (data_dir / "utt2lang").write_text(f"{utts[0]} it\n{utts[1]} xx\n", encoding="utf-8")
    out = _entry("whisper_decode", "--data_dir", data_dir, "--out_dir", tmp_path / "out", cwd=tmp_path)
    assert f"{data_dir}/utt2lang:2: language 'xx' of {utts[1]}: Whisper has no token <|xx|>" in out
    assert not (tmp_path / "out").exists()


def test_decode_utterance_without_language(data_dir: Path, tmp_path: Path) -> None:
    utts = [line.split()[0] for line in _lines(data_dir / "utt2lang")]
    (data_dir / "utt2lang").write_text(f"{utts[0]} it\n", encoding="utf-8")
    out = _entry("whisper_decode", "--data_dir", data_dir, "--out_dir", tmp_path / "out", cwd=tmp_path)
    assert f"{data_dir}/utt2lang: no language for utterance {utts[1]}" in out


def test_decode_without_utt2lang(data_dir: Path, tmp_path: Path) -> None:
    (data_dir / "utt2lang").unlink()
    out = _entry("whisper_decode", "--data_dir", data_dir, "--out_dir", tmp_path / "out", cwd=tmp_path)
    assert f"{data_dir}/utt2lang: missing" in out and "--lang_mode auto" in out


def test_decode_adapter_dir_without_weights(data_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "adapter").mkdir()
    out = _entry("whisper_decode", "--data_dir", data_dir, "--out_dir", tmp_path / "out",
                 "--adapter_dir", tmp_path / "adapter", cwd=tmp_path)
    assert f"{tmp_path / 'adapter'}: no adapter_config.json; not a peft adapter directory" in out


@pytest.mark.parametrize("content, message", [
    ("", "empty; a config names at least one setting"),
    ("r: [\n", "invalid yaml"),
    ("rank: 8\n", "unknown key(s) rank"),
    ("r: 8\nwhere: everywhere\n", "where"),
])
def test_train_lora_bad_lora_config(recipe: Path, tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "lora.yaml"
    config.write_text(content, encoding="utf-8")
    feats = recipe / "dump" / "whisper_base"
    out = _entry("train_lora", "--lang", "it", "--train_dir", recipe / "dump/raw/it_train",
                 "--dev_dir", recipe / "dump/raw/it_dev", "--train_feats", feats / "it_train/feats.scp",
                 "--dev_feats", feats / "it_dev/feats.scp", "--lora_config", config,
                 "--train_config", REPO / "test/conf/train_smoke.yaml", "--out_dir", tmp_path / "exp", cwd=tmp_path)
    assert str(config) in out and message in out
    assert not (tmp_path / "exp" / "adapter").exists()


def test_train_lora_missing_train_config(recipe: Path, tmp_path: Path) -> None:
    feats = recipe / "dump" / "whisper_base"
    out = _entry("train_lora", "--lang", "it", "--train_dir", recipe / "dump/raw/it_train",
                 "--dev_dir", recipe / "dump/raw/it_dev", "--train_feats", feats / "it_train/feats.scp",
                 "--dev_feats", feats / "it_dev/feats.scp", "--lora_config", REPO / "conf/lora/r32_qv_dec.yaml",
                 "--train_config", tmp_path / "none.yaml", "--out_dir", tmp_path / "exp", cwd=tmp_path)
    assert f"{tmp_path / 'none.yaml'}: cannot read" in out


def test_features_of_a_missing_data_dir(tmp_path: Path) -> None:
    out = _entry("dump_feats", "--data_dir", tmp_path / "nowhere", "--out_dir", tmp_path / "out", cwd=tmp_path)
    assert str(tmp_path / "nowhere") in out and not (tmp_path / "out").exists()


# --- the data validator (utils/validate_data_dir.sh, stages 1 and 3) -------------------------

def _validate(data_dir: Path, *flags: str) -> str:
    result = subprocess.run([str(REPO / "utils/validate_data_dir.sh"), *flags, str(data_dir)], capture_output=True,
                            text=True, timeout=120, check=False)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "Traceback" not in out, out
    return out


def test_validate_transcript_of_punctuation_only(data_dir: Path) -> None:
    lines = _lines(data_dir / "text")
    utt = lines[1].split()[0]
    (data_dir / "text").write_text(f"{lines[0]}\n{utt} ¿ ... !\n", encoding="utf-8")
    assert f"{data_dir}/text:2: transcript has no words (only punctuation or symbols): '{utt}'" in _validate(data_dir)


def test_validate_utterance_missing_from_utt2spk(data_dir: Path) -> None:
    lines = _lines(data_dir / "utt2spk")
    (data_dir / "utt2spk").write_text(lines[0] + "\n", encoding="utf-8")
    out = _validate(data_dir)
    assert f"{data_dir}/text:2: utterance not in utt2spk" in out


def test_validate_audio_that_is_a_directory(data_dir: Path, tmp_path: Path) -> None:
    utt = _lines(data_dir / "wav.scp")[0].split()[0]
    (tmp_path / "audio_dir").mkdir()
    rest = _lines(data_dir / "wav.scp")[1:]
    (data_dir / "wav.scp").write_text("\n".join([f"{utt} {tmp_path / 'audio_dir'}", *rest]) + "\n")
    assert f"{data_dir}/wav.scp:1: audio path is not a file" in _validate(data_dir, "--check-audio")


def test_validate_audio_of_zero_bytes(data_dir: Path, tmp_path: Path) -> None:
    utt = _lines(data_dir / "wav.scp")[0].split()[0]
    (tmp_path / "empty.wav").write_bytes(b"")
    rest = _lines(data_dir / "wav.scp")[1:]
    (data_dir / "wav.scp").write_text("\n".join([f"{utt} {tmp_path / 'empty.wav'}", *rest]) + "\n")
    assert f"{data_dir}/wav.scp:1: audio file is empty (0 bytes)" in _validate(data_dir, "--check-audio")


def test_validate_missing_audio(data_dir: Path, tmp_path: Path) -> None:
    utt = _lines(data_dir / "wav.scp")[0].split()[0]
    rest = _lines(data_dir / "wav.scp")[1:]
    (data_dir / "wav.scp").write_text("\n".join([f"{utt} {tmp_path / 'gone.wav'}", *rest]) + "\n")
    assert f"{data_dir}/wav.scp:1: audio file not found" in _validate(data_dir, "--check-audio")


# --- segments (stage 3's format_wav_scp) ------------------------------------------------------

def _segmented(data_dir: Path, segment: str) -> tuple[Path, Path]:
    """``data_dir`` as one recording with ``segment`` (``start end``) as its only utterance; its keys file."""
    rec, value = _lines(data_dir / "wav.scp")[0].split(maxsplit=1)
    seg_dir = data_dir.parent / "segmented"
    seg_dir.mkdir()
    (seg_dir / "wav.scp").write_text(f"{rec} {value}\n")
    (seg_dir / "segments").write_text(f"{rec}-seg1 {rec} {segment}\n")
    keys = data_dir.parent / "keys"
    keys.write_text(f"{rec}-seg1\n")
    return seg_dir, keys


def test_format_malformed_segment(data_dir: Path, tmp_path: Path) -> None:
    seg_dir, keys = _segmented(data_dir, "0.5 end")
    out = _entry("format_wav_scp", "--in_dir", seg_dir, "--keys", keys, "--out_dir", tmp_path / "fmt", cwd=tmp_path)
    assert f"{seg_dir}/segments:1: utterance" in out and "expected 'utt rec start end'" in out
    assert not (tmp_path / "fmt").exists()


def test_format_segment_past_the_end_is_a_named_skip(data_dir: Path, tmp_path: Path) -> None:
    seg_dir, keys = _segmented(data_dir, "500.0 501.0")
    result = subprocess.run([sys.executable, "-m", "espnet_adapters.bin.format_wav_scp", "--in_dir", str(seg_dir),
                             "--keys", str(keys), "--out_dir", str(tmp_path / "fmt")], capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert "0 formatted, 1 skipped" in result.stderr
    skipped = (tmp_path / "fmt" / "skipped").read_text(encoding="utf-8")
    assert f"{seg_dir}/segments:1: segment 500.0-501.0 s is empty" in skipped


# --- the recipe: stages refuse missing, half-written or stale input ----------------------------

def test_stage3_before_stage1(recipe: Path) -> None:
    with _moved_away(recipe / "data" / "it_dev"):
        out = _run_fails(recipe, "--stage", "3", "--stop_stage", "3")
    assert "data/it_dev is missing or incomplete (no data/it_dev/.done): run stage 1" in out
    assert "ended with exit code 1 in stage 3" in out


def test_stage4_on_interrupted_stage3(recipe: Path) -> None:
    done = recipe / "dump" / "raw" / "it_test" / ".done"
    with _moved_away(done):
        out = _run_fails(recipe, "--stage", "4", "--stop_stage", "4")
    assert "dump/raw/it_test is missing or incomplete (no dump/raw/it_test/.done): run stage 3" in out


def test_stage6_on_interrupted_stage4(recipe: Path) -> None:
    done = recipe / "dump" / "whisper_base" / "it_train" / ".done"
    with _moved_away(done):
        out = _run_fails(recipe, "--stage", "6", "--stop_stage", "6",
                         "--train_config", str(REPO / "test/conf/train_smoke.yaml"))
    assert "dump/whisper_base/it_train is missing or incomplete" in out and "run stage 4" in out
    assert not list((recipe / "exp").glob("*_lora_it_*/adapter"))


def test_stage8_before_stage7(recipe: Path) -> None:
    out = _run_fails(recipe, "--stage", "8", "--stop_stage", "8", "--cross_eval", "false")
    assert "has no finished decode; run stage 7 first" in out


def test_stage7_without_adapters_says_so(recipe: Path) -> None:
    """No adapter trained yet: stage 7 decodes the base model and says which adapter it left out."""
    out = run_recipe(recipe, *SMALL, "--stage", "7", "--stop_stage", "7", "--decode_base", "false")
    assert "no adapter yet (stage 6 not run): not decoded on it_test" in out


def test_stage3_punctuation_only_transcript(recipe: Path) -> None:
    text = recipe / "data" / "it_dev" / "text"
    lines = _lines(text)
    utt = lines[0].split()[0]
    with _edited(text, "\n".join([f"{utt} ?!", *lines[1:]]) + "\n"):
        out = _run_fails(recipe, "--stage", "3", "--stop_stage", "3")
    assert f"data/it_dev/text:1: transcript has no words (only punctuation or symbols): '{utt}'" in out


def test_stage3_utterance_without_speaker(recipe: Path) -> None:
    """An utterance of wav.scp and text missing from utt2spk is named, not dropped ("kept 1 of 1")."""
    utt2spk = recipe / "data" / "it_dev" / "utt2spk"
    lines = _lines(utt2spk)
    with _edited(utt2spk, lines[0] + "\n"):
        out = _run_fails(recipe, "--stage", "3", "--stop_stage", "3")
    assert "data/it_dev/text:2: utterance not in utt2spk" in out


def test_stage4_follows_replaced_audio(recipe: Path) -> None:
    """Audio replaced under the same name and length (wav.scp unchanged) makes stage 4 run again."""
    out = run_recipe(recipe, *SMALL, "--stage", "4", "--stop_stage", "4")
    assert "it_test: up to date" in out
    ark = recipe / "dump" / "audio" / "it_test" / "format.1" / "wav.ark"
    data = ark.read_bytes()
    ark.write_bytes(data)  # the same bytes, rewritten: a new recording as far as any stamp can tell
    out = run_recipe(recipe, *SMALL, "--stage", "4", "--stop_stage", "4")
    assert "it_test: up to date" not in out and "it_test: 2 utterances" in out
    assert "it_train: up to date" in out


def test_second_run_in_the_same_recipe_is_refused(recipe: Path) -> None:
    with open(recipe / ".adapt.lock", "a", encoding="utf-8") as lock:  # what another run.sh holds
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        out = _run_fails(recipe, "--stage", "4", "--stop_stage", "4")
    assert f"Error: another run is using {recipe}" in out and "wait for it to end" in out
    # once the other run has ended, the recipe runs again
    assert "Successfully finished" in run_recipe(recipe, *SMALL, "--stage", "4", "--stop_stage", "4")


def test_missing_lora_config(recipe: Path, tmp_path: Path) -> None:
    out = _run_fails(recipe, "--lora_config", str(tmp_path / "nope.yaml"), "--stage", "4", "--stop_stage", "4")
    assert f"--lora_config {tmp_path / 'nope.yaml'}" in out and "not found" in out


def test_setup_without_languages(tmp_path: Path) -> None:
    result = subprocess.run([str(REPO / "egs2/TEMPLATE/adapt1/setup.sh"), str(tmp_path / "adapt1"), ""],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert "language" in (result.stdout + result.stderr)
    assert not (tmp_path / "adapt1" / "run.sh").exists()


def test_unknown_stage_argument(recipe: Path) -> None:
    out = _run_fails(recipe, "--stage", "4", "--stop_stage", "4", "stray")
    assert "unexpected arguments: stray" in out


