"""pytest tests of power_thermal_timeline.py (the gpus.csv power / temperature / clock timeline).

The fixtures are small gpus.csv files built in tmp_path with known piecewise-constant values, so
energies, averages, peaks and throttle seconds can be checked exactly.

Run: /usr/bin/python3 -m pytest tests/analysis -q
"""

import math
import os
import subprocess
import sys

import pandas as pd
import pytest

import power_thermal_timeline as ptt

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(ptt.__file__)), "power_thermal_timeline.py")
HEADER = "time_s,gpu,power_w,temp_die_c,temp_sink_c,clock_mhz,throttle_state,compute_util,mem_util"
MIN_PNG_BYTES = 5 * 1024
EPS = 1e-9

# (time_s, gpu, power_w, temp_die_c, temp_sink_c, clock_mhz, throttle_state), rows of the two GPUs
# interleaved by time as the simulator writes them.
#   GPU 0: 100 W on [0, 2), 300 W on [2, 3)                     -> 500 J over 3 s, 166.67 W
#   GPU 1: 200 W [0,1), 250 W [1,1.5) hw_slowdown, 150 W [1.5,2.5), 180 W [2.5,3.25) sw_slowdown
#          (two rows, merged into one shaded interval), 120 W [3.25,4), last row shutdown at 4
#                                                               -> 200+125+150+135+90 = 700 J
ROWS = [
    (0.0, 0, 100.0, 60.0, 40.0, 1980.0, "none"),
    (0.0, 1, 200.0, 65.0, 42.0, 1980.0, "none"),
    (1.0, 1, 250.0, 88.5, 50.0, 1410.0, "hw_slowdown"),
    (1.5, 1, 150.0, 84.0, 49.0, 1980.0, "none"),
    (2.0, 0, 300.0, 75.0, 45.0, 1980.0, "none"),
    (2.5, 1, 180.0, 80.0, 48.0, 1700.0, "sw_slowdown"),
    (3.0, 0, 90.0, 72.0, 44.0, 1980.0, "none"),
    (3.0, 1, 180.0, 81.0, 48.5, 1650.0, "sw_slowdown"),
    (3.25, 1, 120.0, 79.0, 47.0, 1980.0, "none"),
    (4.0, 1, 0.0, 70.0, 46.0, 0.0, "shutdown"),
]


def csv_text(rows, header=HEADER):
    lines = [header]
    for t, g, p, die, sink, clk, st in rows:
        lines.append(f"{t},{g},{p},{die},{sink},{clk},{st},0.5,0.25")
    return "\n".join(lines) + "\n"


@pytest.fixture
def gpus_csv(tmp_path):
    path = tmp_path / "gpus.csv"
    path.write_text(csv_text(ROWS))
    return path


def assert_png(path):
    assert path.is_file(), f"{path} was not written"
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > MIN_PNG_BYTES


# ---------------------------------------------------------------- the numbers

def test_summary_exact(gpus_csv):
    s = ptt.summarise(ptt.read_gpus_csv(str(gpus_csv)))
    assert list(s) == [0, 1]
    g0, g1 = s[0], s[1]
    assert g0["rows"] == 3 and g1["rows"] == 7
    assert g0["energy_j"] == pytest.approx(500.0, abs=EPS)
    assert g0["covered_s"] == pytest.approx(3.0, abs=EPS)
    assert g0["avg_power_w"] == pytest.approx(500.0 / 3.0, abs=EPS)
    assert g0["peak_power_w"] == pytest.approx(300.0, abs=EPS)
    assert g0["max_temp_die_c"] == pytest.approx(75.0, abs=EPS)
    assert g0["throttle_s"] == {}

    assert g1["energy_j"] == pytest.approx(700.0, abs=EPS)
    assert g1["covered_s"] == pytest.approx(4.0, abs=EPS)
    assert g1["avg_power_w"] == pytest.approx(175.0, abs=EPS)
    assert g1["peak_power_w"] == pytest.approx(250.0, abs=EPS)
    assert g1["max_temp_die_c"] == pytest.approx(88.5, abs=EPS)
    assert list(g1["throttle_s"]) == ["sw_slowdown", "hw_slowdown", "shutdown"]
    assert g1["throttle_s"]["hw_slowdown"] == pytest.approx(0.5, abs=EPS)
    assert g1["throttle_s"]["sw_slowdown"] == pytest.approx(0.75, abs=EPS)
    assert g1["throttle_s"]["shutdown"] == pytest.approx(0.0, abs=EPS)   # last row: no time after it


def test_summarise_plain_dataframe_and_edge_cases():
    # A DataFrame built in memory (numeric dtypes, no 'line' column) works as well.
    # GPU 2: a 999 W / 99 C row superseded at the same instant never counts; GPU 3 has one row.
    df = pd.DataFrame({
        "time_s": [0.0, 1.0, 1.0, 2.0, 5.0],
        "gpu": [2, 2, 2, 2, 3],
        "power_w": [50.0, 999.0, 70.0, 60.0, 80.0],
        "temp_die_c": [30.0, 99.0, 35.0, 33.0, 41.0],
        "throttle_state": ["none", "hw_slowdown", "none", "none", "none"],
    })
    s = ptt.summarise(df)
    assert s[2]["energy_j"] == pytest.approx(50.0 + 70.0, abs=EPS)
    assert s[2]["avg_power_w"] == pytest.approx(60.0, abs=EPS)
    assert s[2]["peak_power_w"] == pytest.approx(70.0, abs=EPS)
    assert s[2]["max_temp_die_c"] == pytest.approx(35.0, abs=EPS)
    assert s[2]["throttle_s"] == {"hw_slowdown": 0.0}
    assert s[3]["energy_j"] == 0.0 and s[3]["covered_s"] == 0.0
    assert math.isnan(s[3]["avg_power_w"])
    assert s[3]["peak_power_w"] == 80.0 and s[3]["max_temp_die_c"] == 41.0
    table = ptt.format_summary(s)
    assert "n/a" in table.splitlines()[2] and "hw_slowdown_s" in table.splitlines()[0]


# ---------------------------------------------------------------- the plot and the program

def test_main_writes_png_and_prints_summary(gpus_csv, tmp_path, capsys):
    out = tmp_path / "timeline.png"
    assert ptt.main([str(gpus_csv), "--output", str(out), "--title", "run 7"]) == 0
    assert_png(out)
    stdout = capsys.readouterr().out
    lines = stdout.splitlines()
    assert lines[0].split() == ["gpu", "covered_s", "energy_j", "avg_power_w", "peak_power_w", "max_die_c",
                                "sw_slowdown_s", "hw_slowdown_s", "shutdown_s"]
    assert lines[1].split() == ["0", "3", "500", "166.667", "300", "75", "0", "0", "0"]
    assert lines[2].split() == ["1", "4", "700", "175", "250", "88.5", "0.75", "0.5", "0"]
    assert f"wrote {out}" in stdout


def test_plotted_data_steps_and_throttle_intervals(gpus_csv, tmp_path):
    data = ptt.plot_timeline(str(gpus_csv), str(tmp_path / "t.png"))
    assert_png(tmp_path / "t.png")
    assert data["gpus"] == [0, 1]
    s0 = data["series"][0]
    assert s0["time_s"].tolist() == [0.0, 2.0, 3.0]
    assert s0["power_w"].tolist() == [100.0, 300.0, 90.0]
    assert data["series"][1]["temp_sink_c"].tolist() == [42.0, 50.0, 49.0, 48.0, 48.5, 47.0, 46.0]
    assert data["series"][1]["clock_mhz"][2] == 1980.0
    # the two sw_slowdown rows form one interval; the final shutdown row covers no time
    assert data["throttled"] == [(1, 1.0, 1.5, "hw_slowdown"), (1, 2.5, 3.25, "sw_slowdown")]
    assert data["states"] == ["sw_slowdown", "hw_slowdown"]
    assert data["summary"][0]["energy_j"] == pytest.approx(500.0, abs=EPS)


def test_gpus_filter(gpus_csv, tmp_path, capsys):
    out = tmp_path / "g1.png"
    data = ptt.plot_timeline(str(gpus_csv), str(out), gpus=[1])
    assert data["gpus"] == [1] and list(data["summary"]) == [1]
    assert data["summary"][1]["energy_j"] == pytest.approx(700.0, abs=EPS)

    assert ptt.main([str(gpus_csv), "--output", str(out), "--gpus", "1"]) == 0
    rows = [ln.split() for ln in capsys.readouterr().out.splitlines()[1:] if ln[:5].strip().isdigit()]
    assert [r[0] for r in rows] == ["1"]

    assert ptt.main([str(gpus_csv), "--output", str(out), "--gpus", "0"]) == 0
    stdout = capsys.readouterr().out
    assert "no throttling" in stdout and "hw_slowdown" not in stdout

    assert ptt.main([str(gpus_csv), "--output", str(tmp_path / "g7.png"), "--gpus", "0,7"]) == 1
    err = capsys.readouterr().err
    assert "error" in err and "gpus.csv" in err and "7" in err and "GPUs in the file: 0, 1" in err
    assert not (tmp_path / "g7.png").exists()


@pytest.mark.parametrize("bad", ["0,x", "-1", "", "1,,2"])
def test_bad_gpus_option_is_usage_error(gpus_csv, tmp_path, capsys, bad):
    with pytest.raises(SystemExit) as exc:
        ptt.main([str(gpus_csv), "--output", str(tmp_path / "x.png"), "--gpus", bad])
    assert exc.value.code == 2
    assert "--gpus" in capsys.readouterr().err


def test_missing_output_option_is_usage_error(gpus_csv, capsys):
    with pytest.raises(SystemExit) as exc:
        ptt.main([str(gpus_csv)])
    assert exc.value.code == 2 and "--output" in capsys.readouterr().err


# ---------------------------------------------------------------- bad input

def test_missing_file(tmp_path, capsys):
    missing = tmp_path / "nowhere" / "gpus.csv"
    assert ptt.main([str(missing), "--output", str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err
    assert "error" in err and str(missing) in err and "no such file" in err
    assert not (tmp_path / "x.png").exists()


def test_missing_columns_are_all_listed(tmp_path, capsys):
    path = tmp_path / "old_gpus.csv"
    path.write_text("time_s,gpu,power_w,temp_die_c,clock_mhz,compute_util\n0,0,100,50,1980,0.5\n")
    assert ptt.main([str(path), "--output", str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err
    assert "old_gpus.csv" in err
    missing_part = err.split("missing column(s)")[1].split(";")[0]
    assert [c.strip() for c in missing_part.split(",")] == ["temp_sink_c", "throttle_state", "mem_util"]
    assert "available columns: time_s, gpu, power_w" in err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("row, column, shown", [
    (3, "power_w", "'hot'"),
    (2, "time_s", "empty"),
    (4, "temp_die_c", "'nan'"),
    (1, "gpu", "'gpu1'"),
    (5, "gpu", "'0.5'"),
])
def test_non_numeric_value_names_line_and_column(tmp_path, capsys, row, column, shown):
    rows = [list(r) for r in ROWS]
    idx = ["time_s", "gpu", "power_w", "temp_die_c"].index(column)
    rows[row][idx] = {"'hot'": "hot", "empty": "", "'nan'": "nan", "'gpu1'": "gpu1", "'0.5'": "0.5"}[shown]
    path = tmp_path / "bad_gpus.csv"
    path.write_text(csv_text(rows))
    assert ptt.main([str(path), "--output", str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err
    assert "bad_gpus.csv" in err and f"line {row + 2}" in err and repr(column) in err and shown in err
    assert not (tmp_path / "x.png").exists()


def test_empty_throttle_state_and_header_only(tmp_path, capsys):
    rows = [list(r) for r in ROWS]
    rows[2][6] = ""
    path = tmp_path / "gpus.csv"
    path.write_text(csv_text(rows))
    assert ptt.main([str(path), "--output", str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err
    assert "line 4" in err and "throttle_state" in err and "empty" in err

    path.write_text(HEADER + "\n")
    assert ptt.main([str(path), "--output", str(tmp_path / "x.png")]) == 1
    assert "no data rows" in capsys.readouterr().err
    path.write_text("")
    assert ptt.main([str(path), "--output", str(tmp_path / "x.png")]) == 1
    assert "empty file" in capsys.readouterr().err


def test_time_going_backwards_names_gpu_and_row(tmp_path, capsys):
    rows = [list(r) for r in ROWS]
    rows[8][0] = 2.75          # GPU 1 at line 10: 2.75 s after its 3.0 s row (line 9)
    path = tmp_path / "gpus.csv"
    path.write_text(csv_text(rows))
    assert ptt.main([str(path), "--output", str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err
    assert "gpus.csv" in err and "backwards" in err and "GPU 1" in err
    assert "line 10" in err and "data row 9" in err and "line 9" in err
    assert "GPU 0" not in err
    assert not (tmp_path / "x.png").exists()

    # rows of different GPUs may interleave in any time order; equal times are fine
    ok = [r for r in ROWS if r[1] == 1] + [r for r in ROWS if r[1] == 0]
    path.write_text(csv_text(ok))
    assert ptt.main([str(path), "--output", str(tmp_path / "ok.png")]) == 0
    assert "500" in capsys.readouterr().out


def test_script_is_executable_with_help_and_runs(gpus_csv, tmp_path):
    assert os.access(SCRIPT, os.X_OK), f"{SCRIPT} is not executable"
    with open(SCRIPT) as f:
        assert f.readline().rstrip("\n") == "#!/usr/bin/python3"
    proc = subprocess.run([SCRIPT, "--help"], capture_output=True, text=True, cwd="/", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout and "--output" in proc.stdout and "--gpus" in proc.stdout

    out = tmp_path / "prog.png"
    proc = subprocess.run([sys.executable, SCRIPT, str(gpus_csv), "-o", str(out), "--gpus", "0,1"],
                          capture_output=True, text=True, cwd="/", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert_png(out)
    assert proc.stdout.splitlines()[1].split()[:3] == ["0", "3", "500"]
    proc = subprocess.run([sys.executable, SCRIPT, str(gpus_csv), "-o", str(out), "--gpus", "a"],
                          capture_output=True, text=True, cwd="/", timeout=120)
    assert proc.returncode == 2 and "--gpus" in proc.stderr
