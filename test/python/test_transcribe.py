"""transcribe (files and folders -> text / JSON / SRT / VTT) and export_adapters (model cards).

Windows and output formats are checked on hand-made inputs.  End to end: a tiny
random Whisper (test_encoder_cache.make_tiny_whisper), two tiny random adapters
(test_routing.make_lang_adapter) and a random linear LID, on a folder with a good
clip, a corrupt file, an 8 kHz stereo file, an mp3 and a 70 s recording; the
texts are random-model tokens, so the test checks plumbing, formats, routing
weights and errors, not recognition.  The export is made from scores that
score.py computes on hand-written hypotheses, so the card's numbers are known.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from test_encoder_cache import make_tiny_whisper
from test_routing import make_lang_adapter

from espnet_adapters.bin import export_adapters, score, transcribe
from espnet_adapters.lid.config import LidConfig
from espnet_adapters.lid.models import LidModel
from espnet_adapters.lid.store import save_lid
from espnet_adapters.publish.cards import read_card_metadata
from espnet_adapters.publish.export import load_export
from espnet_adapters.transcribe.audio import find_audio, split_windows
from espnet_adapters.transcribe.formats import JSON_FORMAT, Segment, subtitles, timestamp
from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.whisper.decode import load_decode_options, search_record
from espnet_adapters.whisper.lora import LoraSpec
from espnet_adapters.whisper.model import resolve_model

SR = 16000
LANGS = ("hi", "it")
REPO = Path(__file__).resolve().parents[2]


def tone(seconds: float, pitch: float = 300.0, rate: int = SR, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(2 * np.pi * pitch * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


# --------------------------------------------------------------------------- windows and formats


def test_long_audio_is_cut_in_its_pauses() -> None:
    audio = np.concatenate([tone(27.0), np.zeros(SR // 2, np.float32), tone(27.0), np.zeros(SR, np.float32),
                            tone(12.0)])
    windows = split_windows(audio, SR, 30.0, 5.0)
    assert windows[0][0] == 0 and windows[-1][1] == len(audio)
    assert all(a[1] == b[0] for a, b in zip(windows, windows[1:]))  # contiguous, nothing lost
    assert all(end - start <= 30 * SR for start, end in windows)
    # the first cut falls inside the 0.5 s pause after 27 s, the second inside the 1 s pause after 54.5 s
    # (within the 5 s before the second window's limit, 27.25 + 30 s)
    assert 27.0 * SR <= windows[0][1] <= 27.5 * SR
    assert 54.5 * SR <= windows[1][1] <= 55.5 * SR and len(windows) == 3
    # speech without a pause is still cut at the limit
    assert [end - start <= 30 * SR for start, end in split_windows(tone(65.0), SR)] == [True, True, True]
    assert split_windows(tone(3.0), SR) == [(0, 3 * SR)]


def test_subtitle_formats() -> None:
    assert timestamp(3723.4567, ",") == "01:02:03,457" and timestamp(0.0, ".") == "00:00:00.000"
    segments = [Segment(0.0, 29.5, "नमस्ते दुनिया", "hi", {"hi": 0.9, "it": 0.1}, {"hi": 1.0, "it": 0.0}),
                Segment(29.5, 31.0, "", "hi", None, {"hi": 0.0, "it": 0.0}),
                Segment(31.0, 40.25, "ciao", "it", None, {"hi": 0.0, "it": 1.0})]
    assert subtitles(segments, "srt") == ("1\n00:00:00,000 --> 00:00:29,500\nनमस्ते दुनिया\n\n"
                                          "2\n00:00:31,000 --> 00:00:40,250\nciao\n")
    assert subtitles(segments, "vtt") == ("WEBVTT\n\n00:00:00.000 --> 00:00:29.500\nनमस्ते दुनिया\n\n"
                                          "00:00:31.000 --> 00:00:40.250\nciao\n")


def test_find_audio(tmp_path: Path) -> None:
    (tmp_path / "in" / "sub").mkdir(parents=True)
    for name in ("a.wav", "sub/b.flac", "notes.txt"):
        (tmp_path / "in" / name).write_bytes(b"x")
    found = find_audio([tmp_path / "in"])
    assert [(item.path.relative_to(tmp_path).as_posix(), item.name) for item in found] == [
        ("in/a.wav", "a"), ("in/sub/b.flac", "sub/b")]
    with pytest.raises(UserInputError, match="would both write a"):
        find_audio([tmp_path / "in", tmp_path / "in" / "a.wav"])
    with pytest.raises(UserInputError, match="no such file"):
        find_audio([tmp_path / "missing.wav"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserInputError, match="no audio files"):
        find_audio([tmp_path / "empty"])


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, whisper_base_dir: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("transcribe")
    tiny = make_tiny_whisper(root / "tiny", whisper_base_dir)
    spec = LoraSpec(r=4, lora_alpha=8, where="both")
    paths = {"root": root, "tiny": tiny}
    for seed, lang in enumerate(LANGS, start=1):
        adapter = make_lang_adapter(tiny, root / "exp" / f"tiny_lora_{lang}_t" / "adapter", lang, spec, seed)
        paths[lang] = adapter
    lid = LidModel(LidConfig(classifier="linear"), 64, len(LANGS))
    save_lid(root / "lid", lid, list(LANGS), 64, {"base_model": resolve_model(str(tiny))})
    paths["lid"] = root / "lid"
    return paths


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("audio") / "in"
    folder.mkdir()
    sf.write(folder / "good.wav", tone(2.0), SR)
    (folder / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    stereo = np.stack([tone(1.5, 200.0, 8000), tone(1.5, 400.0, 8000, seed=1)], axis=1)
    sf.write(folder / "stereo8k.wav", stereo, 8000)
    sf.write(folder / "long.flac", np.concatenate([tone(28.0), np.zeros(SR // 2, np.float32), tone(41.5)]), SR)
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(folder / "good.wav"),
                    str(folder / "clip.mp3")], check=True)
    return folder


def run_transcribe(models: dict[str, Path], out: Path, *args: str) -> int:
    adapters = [arg for lang in LANGS for arg in ("--adapter", f"{lang}={models[lang]}")]
    return transcribe.main([*adapters, "--lid_dir", str(models["lid"]), "--whisper_model", str(models["tiny"]),
                            "--encoder_trim", "none", "--max_new_tokens", "4", "--out_dir", str(out), *args])


def test_transcribe_a_folder_with_a_bad_file(models: dict[str, Path], inputs: Path, tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "out"
    assert run_transcribe(models, out, "--route", "soft", str(inputs)) == 1  # one file failed
    assert f"{inputs / 'corrupt.wav'}" in caplog.text and "1 file(s) failed" in caplog.text
    assert sorted(path.name for path in out.iterdir()) == sorted(
        f"{name}.{kind}" for name in ("good", "stereo8k", "long", "clip") for kind in ("txt", "json", "srt", "vtt"))
    for name, seconds, windows in (("good", 2.0, 1), ("stereo8k", 1.5, 1), ("long", 70.0, 3), ("clip", 2.0, 1)):
        data = json.loads((out / f"{name}.json").read_text(encoding="utf-8"))
        assert data["format"] == JSON_FORMAT and data["route"] == "soft"
        assert data["duration"] == pytest.approx(seconds, abs=0.06)  # mp3 adds encoder padding
        segments = data["segments"]
        assert len(segments) == windows and segments[0]["start"] == 0.0
        assert segments[-1]["end"] == pytest.approx(data["duration"], abs=1e-3)
        assert all(a["end"] == b["start"] for a, b in zip(segments, segments[1:]))
        for segment in segments:
            assert set(segment) == {"start", "end", "text", "language", "language_probabilities", "adapter_weights"}
            probabilities, weights = segment["language_probabilities"], segment["adapter_weights"]
            assert list(probabilities) == list(LANGS) and sum(probabilities.values()) == pytest.approx(1, abs=1e-3)
            # soft routing: the weights are the LID posteriors; the decoding language their argmax
            assert weights == pytest.approx(probabilities, abs=2e-4)
            assert segment["language"] == max(probabilities, key=probabilities.get)
            assert segment["end"] - segment["start"] <= 30.0
        timeline = data["lid_timeline"]
        assert len(timeline["seconds"]) == len(timeline["probabilities"]["hi"]) > windows
        assert timeline["seconds"] == sorted(timeline["seconds"]) and timeline["seconds"][-1] < data["duration"]
        assert (out / f"{name}.txt").read_text(encoding="utf-8") == data["text"] + "\n"
        cues = [s for s in segments if s["text"]]
        assert (out / f"{name}.srt").read_text(encoding="utf-8").count(" --> ") == len(cues)
    # the 70 s recording is cut in its pause after 28 s
    long = json.loads((out / "long.json").read_text())["segments"]
    assert 28.0 <= long[0]["end"] <= 28.5


def test_forced_language_and_base(models: dict[str, Path], inputs: Path, tmp_path: Path) -> None:
    good = str(inputs / "good.wav")
    assert run_transcribe(models, tmp_path / "it", "--lang", "it", "--formats", "json", good) == 0
    segment = json.loads((tmp_path / "it" / "good.json").read_text())["segments"][0]
    assert segment["language"] == "it" and segment["adapter_weights"] == {"hi": 0.0, "it": 1.0}
    assert run_transcribe(models, tmp_path / "base", "--route", "base", "--formats", "json,txt", good) == 0
    segment = json.loads((tmp_path / "base" / "good.json").read_text())["segments"][0]
    assert segment["adapter_weights"] == {"hi": 0.0, "it": 0.0}
    assert sorted(p.name for p in (tmp_path / "base").iterdir()) == ["good.json", "good.txt"]
    assert run_transcribe(models, tmp_path / "x", "--lang", "te", good) == 1  # no adapter for te


def write_scored_decodes(exp: Path, decoding: Path) -> dict[str, dict[str, float]]:
    """Hand-written refs and hyps for base and adapters, "decoded" with the options of ``decoding``
    (their stats.json), scored by score.py; scores.json by decode dir."""
    record = search_record(load_decode_options(decoding))
    refs = {"hi": ["एक दो तीन चार", "पाँच छह सात"], "it": ["uno due tre quattro", "cinque sei sette"]}
    hyps = {("tiny", "hi"): ["एक एक", "पाँच"], ("tiny_lora_hi_t", "hi"): ["एक दो तीन", "पाँच छह सात"],
            ("tiny", "it"): ["uno", "sei"], ("tiny_lora_it_t", "it"): ["uno due tre quattro", "cinque sette"]}
    scores = {}
    for (model, lang), lines in hyps.items():
        decode = exp / model / f"decode_{lang}_test"
        decode.mkdir(parents=True, exist_ok=True)
        (decode / "ref").write_text("".join(f"u{i} {t}\n" for i, t in enumerate(refs[lang])), encoding="utf-8")
        (decode / "hyp").write_text("".join(f"u{i} {t}\n" for i, t in enumerate(lines)), encoding="utf-8")
        (decode / "stats.json").write_text(json.dumps(record))
        assert score.main(["--ref_text", str(decode / "ref"), "--hyp_text", str(decode / "hyp"), "--lang", lang,
                           "--set_name", f"{lang}_test", "--out_dir", str(decode / "score")]) == 0
        scores[f"{model}/{lang}"] = json.loads((decode / "score" / "scores.json").read_text())
    return scores


def test_export_cards_and_transcribe_from_the_export(models: dict[str, Path], inputs: Path, tmp_path: Path) -> None:
    exp = models["root"] / "exp"
    decoding = tmp_path / "decode.yaml"
    decoding.write_text("encoder_trim: null\nmax_new_tokens: 4\n")
    scores = write_scored_decodes(exp, decoding)
    for lang in LANGS:
        (exp / f"tiny_lora_{lang}_t" / "train_stats.json").write_text(json.dumps(
            {"train_utts": 12, "steps": 30, "epochs": 2.5, "best_step": 20, "best_dev_wer": 40.0,
             "base_dev_wer": 90.0, "trainable_params": 1234, "total_params": 99999, "train_seconds": 60}))
    routing = tmp_path / "routing"
    routing.mkdir()
    (routing / "tau_selection.json").write_text(json.dumps(
        {"candidates": [{"tau": 0.5, "dev_wer": 50.0, "dev_cer": 20.0}, {"tau": 0.9, "dev_wer": 40.0, "dev_cer": 15.0}],
         "chosen": 0.9}))
    out = tmp_path / "export"
    args = ["--exp_dir", str(exp), "--out_dir", str(out), "--whisper_model", str(models["tiny"]), "--corpus", "synth",
            "--licences", str(REPO / "conf/export/data_licences.yaml"), "--decode_config", str(decoding),
            "--lid_dir", str(models["lid"]), "--routing_dir", str(routing), "--families", str(REPO / "conf/families.yaml"),
            *(arg for lang in LANGS for arg in ("--adapter", f"{lang}={models[lang]}"))]
    assert export_adapters.main(args) == 0
    for lang in LANGS:
        card = read_card_metadata(out / lang / "README.md")
        assert card["language"] == [lang] and card["library_name"] == "peft" and card["base_model"] == "openai/tiny"
        assert card["license"] == ("mpl-2.0" if lang == "it" else "other")
        metrics = {m["type"]: m["value"] for m in card["model-index"][0]["results"][0]["metrics"]}
        own = scores[f"tiny_lora_{lang}_t/{lang}"]
        assert metrics == {"wer": round(own["wer"], 2), "cer": round(own["cer"], 2)}
        text = (out / lang / "README.md").read_text(encoding="utf-8")
        assert f"| {lang}_test | 2 | {scores[f'tiny/{lang}']['wer']:.1f} | {own['wer']:.1f} |" in text
        config = json.loads((out / lang / "adapter_config.json").read_text())
        assert config["base_model_name_or_path"] == "openai/tiny"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["routing"] == {"tau": 0.9, "top_k": 2} and set(manifest["lid"]["files"]) == {
        "lid.json", "lid_model.safetensors"}
    assert yaml.safe_load((out / "decoding.yaml").read_text())["max_new_tokens"] == 4
    loaded = load_export(out)
    assert sorted(loaded.adapters) == list(LANGS) and loaded.tau == 0.9 and loaded.lid_dir == out / "lid"
    assert loaded.families == {"hi": "Indo-Aryan", "it": "Romance"}

    # transcribe from the export: its tau and decoding options, the LID shipped with it
    got = tmp_path / "got"
    assert transcribe.main(["--adapters", str(out), "--whisper_model", str(models["tiny"]), "--out_dir", str(got),
                            "--formats", "json", str(inputs / "good.wav")]) == 0
    data = json.loads((got / "good.json").read_text())
    weights = data["segments"][0]["adapter_weights"]
    probabilities = data["segments"][0]["language_probabilities"]
    assert data["route"] == "threshold"
    if max(probabilities.values()) >= 0.9:
        assert sorted(weights.values()) == [0.0, 1.0]
    else:  # below tau: both adapters mixed by their posteriors
        assert weights == pytest.approx(probabilities, abs=2e-4)

    # hierarchical routing with the export's families: weights of one family, summing to 1
    assert transcribe.main(["--adapters", str(out), "--whisper_model", str(models["tiny"]), "--out_dir", str(got),
                            "--formats", "json", "--route", "hierarchical", str(inputs / "good.wav")]) == 0
    segment = json.loads((got / "good.json").read_text())["segments"][0]
    assert sum(segment["adapter_weights"].values()) == pytest.approx(1.0, abs=1e-3)

    # an edited export is refused, naming the file
    shutil.copy(out / "hi" / "README.md", out / "it" / "adapter_model.safetensors")
    with pytest.raises(UserInputError, match=r"it/adapter_model.safetensors: its sha256 differs"):
        load_export(out)


# --------------------------------------------------------------------------- the demo in a real browser


def chromium_driver():  # type: ignore[no-untyped-def]
    """Headless Debian chromium through its chromedriver (tools/install.sh installs both)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if binary is None or driver is None:
        pytest.fail("chromium and chromium-driver are missing: run tools/install.sh")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,1400"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


def test_demo_in_a_headless_browser(models: dict[str, Path], inputs: Path, tmp_path: Path) -> None:
    import threading

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from espnet_adapters.demo.server import serve
    from espnet_adapters.transcribe.engine import RouteOptions, Transcriber
    from espnet_adapters.whisper.decode import DecodeOptions

    transcriber = Transcriber({lang: models[lang] for lang in LANGS}, models["lid"], str(models["tiny"]),
                              DecodeOptions(max_new_tokens=4), RouteOptions("soft"))
    ready = threading.Event()
    thread = threading.Thread(target=serve, args=(transcriber, "127.0.0.1", 0, ready), daemon=True)
    thread.start()
    assert ready.wait(30)
    browser = chromium_driver()
    try:
        browser.get(f"http://127.0.0.1:{ready.port}/")
        assert "hi, it" in browser.find_element(By.ID, "adapters").text
        routes = [option.text for option in Select(browser.find_element(By.ID, "route")).options]
        assert routes == ["threshold", "soft", "hard", "lang=hi", "lang=it"]
        Select(browser.find_element(By.ID, "route")).select_by_visible_text("soft")
        browser.find_element(By.ID, "file").send_keys(str(inputs / "long.flac"))
        browser.find_element(By.ID, "go").click()
        WebDriverWait(browser, 120).until(expected_conditions.text_to_be_present_in_element((By.ID, "status"), "Done"))
        routed = browser.find_element(By.ID, "routed").text
        expected = transcriber.transcribe(inputs / "long.flac", RouteOptions("soft"))
        assert routed == expected.text and routed  # the page shows what the engine decodes
        assert browser.find_element(By.ID, "base").text == transcriber.transcribe(
            inputs / "long.flac", RouteOptions("base")).text
        assert browser.find_element(By.ID, "routename").text == "soft"
        assert browser.execute_script("return document.getElementById('plot').naturalWidth") == 800
        rows = browser.find_elements(By.CSS_SELECTOR, "#segments tbody tr")
        assert len(rows) == 3 and rows[0].find_elements(By.TAG_NAME, "td")[0].text == "0.00"
        browser.save_screenshot(str(tmp_path / "demo.png"))
        # a file the server cannot read: the page says which, in its error style
        (tmp_path / "bad.wav").write_bytes(b"not audio")
        browser.find_element(By.ID, "file").send_keys(str(tmp_path / "bad.wav"))
        browser.find_element(By.ID, "go").click()
        WebDriverWait(browser, 60).until(expected_conditions.text_to_be_present_in_element((By.ID, "status"), "bad.wav"))
        assert browser.find_element(By.ID, "status").get_attribute("class") == "error"
    finally:
        browser.quit()
        ready.server.shutdown()
