"""train_summary: the lever table (cost columns), the curves and the data-scaling table/plot from train_stats.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from espnet_adapters.bin import train_summary
from espnet_adapters.train.summary import read_run, runs_table, scaling_points, scaling_table
from espnet_adapters.utils.cli import UserInputError


def _eval(step: int, wer: float, cer: float, corr: float) -> dict[str, float]:
    return {"step": step, "dev_loss": 1.0 / (step + 1), "dev_wer": wer, "dev_cer": cer, "dev_corr": corr}


def _run(root: Path, name: str, lang: str, utts: int, evals: list[dict[str, float]], best: int,
         adapter_bytes: int | None = 2**20) -> Path:
    run = root / name
    run.mkdir(parents=True)
    stats = {"adapter": best > 0, "lang": lang, "train_utts": utts, "steps": evals[-1]["step"], "best_step": best,
             "trainable_params": 786432, "peak_memory_mb": 1234.4, "train_seconds": 60.0, "seconds_per_step": 0.5,
             "evals": evals}
    (run / "train_stats.json").write_text(json.dumps(stats), encoding="utf-8")
    if adapter_bytes is not None:
        (run / "adapter").mkdir()
        (run / "adapter" / "adapter_model.safetensors").write_bytes(b"\0" * adapter_bytes)
    return run


def test_lever_table_reports_cost_and_the_installed_adapter(tmp_path: Path) -> None:
    good = _run(tmp_path, "hi_240", "hi", 240, [_eval(0, 108.9, 98.3, 0.0), _eval(40, 60.0, 30.0, 45.0),
                                                 _eval(80, 62.0, 29.0, 44.0)], best=40)
    none = _run(tmp_path, "te_60", "te", 60, [_eval(0, 100.0, 90.0, 1.0), _eval(40, 101.0, 95.0, 0.0)], best=0,
                adapter_bytes=None)
    table = runs_table([read_run(good), read_run(none)])
    assert table[2] == "|hi_240|240|80|108.9 / 98.3 / 0.0|60.0 / 30.0 / 45.0|40|786432|1.0|1234|60.0|0.5|"
    assert table[3] == "|te_60|60|40|100.0 / 90.0 / 1.0|none installed|0|786432|-|1234|60.0|0.5|"


def test_scaling_table_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = [
        _run(tmp_path, "hi_480", "hi", 480, [_eval(0, 108.0, 98.0, 0.0), _eval(40, 40.0, 18.0, 62.0)], best=40),
        _run(tmp_path, "hi_120", "hi", 120, [_eval(0, 108.0, 98.0, 0.0), _eval(40, 70.0, 35.0, 30.0)], best=40),
        _run(tmp_path, "te_120", "te", 120, [_eval(0, 140.0, 101.0, 0.0), _eval(40, 150.0, 99.0, 0.0)], best=0,
             adapter_bytes=None),
    ]
    points = scaling_points([read_run(run) for run in runs])
    assert [utts for utts, _ in points["hi"]] == [120, 480]
    assert points["te"][0][1]["step"] == 0  # no adapter installed: the base stands at that size
    assert scaling_table([read_run(run) for run in runs]) == [
        "|lang|120|480|", "|---|---|---|", "|hi|70.0 / 35.0 / 30.0|40.0 / 18.0 / 62.0|",
        "|te|140.0 / 101.0 / 0.0|-|",
    ]
    png = tmp_path / "scaling.png"
    assert train_summary.main([*map(str, runs), "--scaling_plot", str(png), "--link_dir", str(tmp_path)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out
    assert "|hi|70.0 / 35.0 / 30.0|40.0 / 18.0 / 62.0|" in out and "![data scaling](scaling.png)" in out


def test_scaling_needs_lang_and_size(tmp_path: Path) -> None:
    run = _run(tmp_path, "old", "hi", 240, [_eval(0, 100.0, 90.0, 0.0)], best=0)
    stats = json.loads((run / "train_stats.json").read_text(encoding="utf-8"))
    del stats["train_utts"]
    (run / "train_stats.json").write_text(json.dumps(stats), encoding="utf-8")
    with pytest.raises(UserInputError, match=rf"^{run / 'train_stats.json'}: no 'lang' / 'train_utts'"):
        scaling_points([read_run(run)])
    assert train_summary.main([str(run), "--scaling_plot", str(tmp_path / "x.png")]) == 1
    assert not (tmp_path / "x.png").exists()
