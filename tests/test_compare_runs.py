"""tools/compare_runs.py: two metrics.jsonl files side by side, as a table and a plot."""
import json

import pytest

from run_helpers import load_tool

compare_runs = load_tool("compare_runs")


def write_run(path, accs):
    rows = [{"epoch": e, "test_acc": a, "train_loss": 1.0 / e} for e, a in enumerate(accs, start=1)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_the_table_shows_every_nth_and_the_last_epoch_of_each_run(tmp_path, capsys):
    a = write_run(tmp_path / "a.jsonl", [0.5, 0.6, 0.7, 0.8, 0.9])
    b = write_run(tmp_path / "b.jsonl", [0.55, 0.65, 0.75])
    compare_runs.main([f"ours={a}", f"theirs={b}", "--every", "2", "--out", str(tmp_path / "plot.png")])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| epoch | ours test acc | theirs test acc | ours train loss | theirs train loss |"
    assert lines[2:5] == ["| 2 | 60.00 % | 65.00 % | 0.5000 | 0.5000 |",
                          "| 4 | 80.00 % |  | 0.2500 |  |",
                          "| 5 | 90.00 % |  | 0.2000 |  |"]
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_epochs_cuts_the_runs_and_bad_specs_are_named(tmp_path, capsys):
    a = write_run(tmp_path / "a.jsonl", [0.5, 0.6, 0.7])
    compare_runs.main([f"ours={a}", "--epochs", "2", "--every", "1"])
    assert capsys.readouterr().out.splitlines()[-1] == "| 2 | 60.00 % | 0.5000 |"
    with pytest.raises(SystemExit, match="NAME=PATH"):
        compare_runs.main([str(a)])
    with pytest.raises(SystemExit, match="no file"):
        compare_runs.main([f"ours={tmp_path / 'missing.jsonl'}"])
