"""A bad option or config file stops ./run.sh before stage 1: a message naming it, a non-zero exit, no success.

Each case runs the real run.sh of a fresh recipe (setup.sh); nothing gets as far as a stage, so
every case takes about a second (a few for the config files, which are loaded through their
dataclasses by espnet_adapters.bin.check_configs).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from fixtures.recipe import new_recipe, recipe_env

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return new_recipe(tmp_path_factory.mktemp("options") / "adapt1", "hi it")


def _fails(recipe: Path, *args: str) -> str:
    """./run.sh ARGS (up to stage 1 unless ARGS say otherwise) fails before stage 1; its output."""
    stop = () if "--stop_stage" in args else ("--stop_stage", "1")
    result = subprocess.run(["./run.sh", *args, *stop], cwd=recipe, env=recipe_env(),
                            capture_output=True, text=True, timeout=300, check=False)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "Successfully finished. [elapsed" not in result.stdout, out
    assert "Error: ended with exit code" in out  # the run itself says it failed
    assert not (recipe / "data").exists()  # stage 1 never ran
    return out


@pytest.mark.parametrize("args, message", [
    (("--stage", "abc"), "--stage 'abc': expected a whole number"),
    (("--nj", "0"), "--nj '0': expected a whole number >= 1"),
    (("--langs", ""), "--langs '': expected one or more language codes"),
    (("--langs", "Hindi"), "--langs 'Hindi': expected ISO 639-1 codes"),
    (("--lora_ranks", "8,16"), "--lora_ranks '8,16': expected whole numbers separated by spaces"),
    (("--route_taus", "high"), "--route_taus 'high': expected numbers separated by spaces"),
    (("--beam_size", "0"), "--beam_size '0': expected a whole number >= 1, or empty"),
    (("--decode_lang", "hi"), "--decode_lang 'hi': expected forced or auto"),
    (("--stage", "5", "--stop_stage", "2"), "--stage '5': expected a stage <= --stop_stage 2"),
    (("--cross_eval", "yes"), 'expected "true" or "false": --cross_eval yes'),
    (("--test_sets", "test dev"), "--test_sets 'test dev': expected split names like test"),
    (("--corpus", "mls", "--test_sets", "test test_other"), "no test_other with --corpus mls"),
    (("--langs", "hi xx"), "--langs: xx: whisper-base has no language token for it"),
    (("--eval_langs", "zz"), "--langs: zz: whisper-base has no language token for it"),
    (("--cache_backend", "onnx"), "Error: --cache_backend onnx: hf or ct2"),
    (("--decode_config", "conf/decode/speech.yaml", "--cache_backend", "ct2"),
     "encoder_span speech (conf/decode/speech.yaml) runs the encoder on the speech only, which CTranslate2 cannot"),
])
def test_bad_option(recipe: Path, args: tuple[str, ...], message: str) -> None:
    assert message in _fails(recipe, *args)


@pytest.mark.parametrize("flag, content, message", [
    ("--lora_config", "r: [\n", "invalid yaml"),
    ("--lora_config", "", "empty; a config names at least one setting"),
    ("--lora_config", "rank: 8\n", "unknown key(s) rank"),
    ("--lora_config", "r: 8\nwhere: both\nencoder_top: 2\n", "encoder_top adds encoder layers to a decoder adapter"),
    ("--lora_config", "r: 0\n", "r must be >= 1"),
    ("--train_config", "lr: fast\n", "lr: expected float"),
    ("--decode_config", "beam_size: two\n", "beam_size: expected int"),
    ("--decode_config", "encoder_span: speech\nencoder_trim: null\n", "encoder_trim must be a number of seconds"),
    ("--augment_config", "copies: 0\n", "copies: at least 1"),
])
def test_bad_config_file(recipe: Path, tmp_path: Path, flag: str, content: str, message: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(content, encoding="utf-8")
    out = _fails(recipe, flag, str(config))
    assert str(config) in out and message in out
    assert "Traceback" not in out


def test_another_test_set_later_makes_only_it(tmp_path: Path) -> None:
    """Stage 1 with --test_sets test, then the default (test test_other): only <lang>_test_other is
    made, the training data keep their .done (nothing downstream would be redone); a language the
    other synthesizer has no voice for (en) keeps test only and stage 1 says so."""
    recipe = new_recipe(tmp_path / "adapt1", "hi en")
    sizes = ("--train_utts", "2", "--dev_utts", "1", "--test_utts", "1", "--eval_langs", "", "--stop_stage", "1")

    def run(*args: str) -> str:
        result = subprocess.run(["./run.sh", *sizes, *args], cwd=recipe, env=recipe_env(),
                                capture_output=True, text=True, timeout=300, check=False)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result.stdout + result.stderr

    run("--test_sets", "test")
    before = {p: p.stat().st_mtime_ns for p in (recipe / "data").glob("*/.done")}
    out = run()
    assert "hi: test_other=1 utterances" in out
    assert "en: no voice of the other synthesizer in conf/synth_other.yaml: no en_test_other" in out
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert sorted(p.name for p in (recipe / "data").iterdir()) == [
        "en_dev", "en_test", "en_train", "hi_dev", "hi_test", "hi_test_other", "hi_train"]
    # Asked for explicitly, a language without a voice is an error naming the config.
    result = subprocess.run(["./run.sh", *sizes, "--test_sets", "test test_other"], cwd=recipe, env=recipe_env(),
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode != 0
    assert "exp/log/data_prep_en.log" in result.stdout + result.stderr  # run.pl names the job's log
    log = (recipe / "exp" / "log" / "data_prep_en.log").read_text(encoding="utf-8")
    assert "synth_other.yaml: no voice of the other synthesizer for language 'en'" in log


def test_bad_other_synthesizer_config_stops_before_stage_1(tmp_path: Path) -> None:
    """conf/synth_other.yaml (read for the default --test_sets) is checked with the other configs."""
    recipe = new_recipe(tmp_path / "adapt1", "hi")
    (recipe / "conf").unlink()
    shutil.copytree(REPO / "conf", recipe / "conf")
    other = recipe / "conf" / "synth_other.yaml"
    other.write_text(other.read_text(encoding="utf-8").replace("f0_mean:", "f0_man:", 1), encoding="utf-8")
    out = _fails(recipe)
    assert "conf/synth_other.yaml: malformed config of the other synthesizer" in out and "Traceback" not in out
    # Not read when the test sets are given (no *_other asked for).
    result = subprocess.run(["./run.sh", "--test_sets", "test", "--stage", "2", "--stop_stage", "2"], cwd=recipe,
                            env=recipe_env(), capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
