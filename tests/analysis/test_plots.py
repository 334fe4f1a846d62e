"""pytest tests of the study plots (plot_metrics_vs_real_imbalance.py,
plot_metrics_vs_imbalance_score.py), sweep_plot.py and their helpers in study_common.py.

The fixtures are small study directories and sweep.csv files built in tmp_path with known
values, so the kept/dropped points, slopes and series can be checked exactly.

Run: /usr/bin/python3 -m pytest tests/analysis -q
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import plot_metrics_vs_imbalance_score as score_plot
import plot_metrics_vs_real_imbalance as real_plot
import study_common as sc
import sweep_plot

ANALYSIS_DIR = os.path.dirname(os.path.abspath(sc.__file__))
SCRIPTS = ["plot_metrics_vs_real_imbalance.py", "plot_metrics_vs_imbalance_score.py", "sweep_plot.py"]

# Six datasets with non-consecutive indices (zero padding: 003.json <-> gates_logs_03, 050.json
# <-> gates_logs_50). Baseline dataset 20 carries a planted mean_tpot_ms outlier (95 ms).
INDICES = [3, 7, 12, 20, 33, 50]
SCORE = {3: 0.05, 7: 0.19, 12: 0.11, 20: 0.33, 33: 0.27, 50: 0.61}
BASE_CV = {3: 0.10, 7: 0.25, 12: 0.18, 20: 0.40, 33: 0.31, 50: 0.52}
BASE_TPOT = {3: 20.0, 7: 22.9, 12: 21.1, 20: 95.0, 33: 24.6, 50: 26.8}
A2A_CV = {3: 0.12, 7: 0.27, 12: 0.20, 20: 0.41, 33: 0.33, 50: 0.55}
A2A_TPOT = {3: 30.0, 7: 36.1, 12: 33.2, 20: 41.9, 33: 38.0, 50: 47.5}
OUTLIER = 20
MIN_PNG_BYTES = 5 * 1024


def result_record(index, tpot):
    return {
        "completed": 100,
        "duration": 50.0 + index,
        "request_throughput": 2.0,
        "output_throughput": 1000.0 - index,
        "total_token_throughput": 3000.0 - 2 * index,
        "mean_ttft_ms": 100.0 + index,
        "median_ttft_ms": 95.0 + index,
        "p99_ttft_ms": 300.0 + index,
        "mean_tpot_ms": tpot,
        "median_tpot_ms": tpot - 1.0,
        "p99_tpot_ms": tpot * 2,
        "mean_itl_ms": tpot,
        "mean_e2el_ms": 5000.0 + index,
        "predicted_imbalance_score": SCORE[index],
        "dataset": f"{index:03d}_{SCORE[index]:.4f}.jsonl",
        "imbalance_components": {"domain_skew": 0.5, "length_skew": 0.1},
    }


def write_results(folder, tpot):
    folder.mkdir()
    for i, v in tpot.items():
        (folder / f"{i:03d}.json").write_text(json.dumps(result_record(i, v)))
    (folder / "README.txt").write_text("not a result")   # ignored: not <index>.json
    return folder


def write_imbalance(path, cv, extra=None):
    # Written in descending index order so that matching by position would pair wrongly.
    doc = {f"gates_logs_{i:02d}": cv[i] for i in sorted(cv, reverse=True)}
    doc.update(extra or {})
    path.write_text(json.dumps(doc, indent=2))
    return path


@pytest.fixture
def study(tmp_path):
    """A study directory; returns a dict of its paths."""
    d = tmp_path / "study"
    d.mkdir()
    return {
        "dir": d,
        "base_res": write_results(d / "baseline_results_json", BASE_TPOT),
        "a2a_res": write_results(d / "default_all2all_results_json", A2A_TPOT),
        "base_imb": write_imbalance(d / "baseline_real_imbalance.json", BASE_CV),
        "a2a_imb": write_imbalance(d / "default_all2all_real_imbalance.json", A2A_CV),
    }


def real_argv(study, output, *extra):
    return ["--baseline-imbalance", str(study["base_imb"]), "--baseline-results", str(study["base_res"]),
            "--all2all-imbalance", str(study["a2a_imb"]), "--all2all-results", str(study["a2a_res"]),
            "--output", str(output), *extra]


def expected_fit(xmap, ymap, indices):
    x = np.array([xmap[i] for i in indices])
    y = np.array([ymap[i] for i in indices])
    slope, intercept = np.polyfit(x, y, 1)
    return slope, intercept, np.corrcoef(x, y)[0, 1]


def assert_png(path):
    assert path.is_file(), f"{path} was not written"
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > MIN_PNG_BYTES, f"{path} is only {len(data)} bytes"


def table_row(stdout, label):
    for line in stdout.splitlines():
        if line.startswith(label):
            return line[len(label):].split()
    raise AssertionError(f"no table row for {label!r} in:\n{stdout}")


# ---------------------------------------------------------------- study_common

def test_iqr_filter_matches_numpy_percentile():
    rng = np.random.default_rng(7)
    values = np.concatenate([rng.normal(50, 5, 40), [120.0, -30.0, 51.0]])
    for k in (0.0, 1.0, 1.5, 3.0):
        q1, q3 = np.percentile(values, [25, 75])
        lo, hi = q1 - k * (q3 - q1), q3 + k * (q3 - q1)
        expected = (values >= lo) & (values <= hi)
        assert np.array_equal(sc.iqr_keep_mask(values, k), expected)
        assert sc.iqr_bounds(values, k) == pytest.approx((lo, hi), abs=1e-12)
    mask = sc.iqr_keep_mask(values, 1.5)
    assert not mask[-3] and not mask[-2] and mask[-1]
    # constant values: IQR = 0, every value equals the bounds and is kept
    assert sc.iqr_keep_mask([4.0, 4.0, 4.0], 1.5).all()


def test_loaders_match_by_integer_index(study):
    results = sc.load_results_dir(str(study["base_res"]))
    assert list(results) == INDICES
    assert results[7].path.endswith("007.json")
    assert results[50].data["mean_tpot_ms"] == BASE_TPOT[50]
    imbalance = sc.load_imbalance(str(study["base_imb"]))
    assert imbalance == BASE_CV
    assert list(imbalance) == sorted(BASE_CV)


def test_fit_helpers_and_units():
    slope, intercept = sc.linear_fit([0.0, 1.0, 2.0], [1.0, 3.0, 5.0])
    assert slope == pytest.approx(2.0, abs=1e-12) and intercept == pytest.approx(1.0, abs=1e-12)
    assert all(np.isnan(v) for v in sc.linear_fit([1.0], [2.0]))
    assert all(np.isnan(v) for v in sc.linear_fit([1.0, 1.0], [2.0, 3.0]))
    assert np.isnan(sc.pearson_r([1.0, 2.0], [3.0, 3.0]))
    assert sc.metric_unit("mean_tpot_ms") == "ms"
    assert sc.metric_unit("output_throughput") == "tokens/s"
    assert sc.metric_unit("total_token_throughput") == "tokens/s"
    assert sc.metric_unit("request_throughput") == "requests/s"
    assert sc.metric_unit("duration") == "s"
    assert sc.metric_unit("step_time_breakdown.moe_s") == "s"
    assert sc.metric_unit("step_time_breakdown.dispatch_bytes") == "bytes"
    assert sc.metric_unit("imbalance.cv_aggregated") == ""
    assert sc.metric_axis_label("p99_ttft_ms") == "p99_ttft_ms (ms)"
    assert sc.metric_axis_label("completed") == "completed"


# ---------------------------------------------------------------- metric vs real imbalance

def test_real_imbalance_counts_and_slopes(study, tmp_path):
    out = tmp_path / "real.png"
    base, a2a = real_plot.plot_metric_vs_real_imbalance(
        str(study["base_imb"]), str(study["base_res"]), str(study["a2a_imb"]), str(study["a2a_res"]),
        "mean_tpot_ms", str(out))
    assert_png(out)
    assert (base.label, a2a.label) == ("Baseline (TP)", "DefaultAll2All (EP)")

    assert (base.n_points, base.n_kept, base.n_dropped) == (6, 5, 1)
    assert base.dropped_indices == [OUTLIER]
    kept = [i for i in INDICES if i != OUTLIER]
    assert base.kept_indices == kept
    slope, intercept, r = expected_fit(BASE_CV, BASE_TPOT, kept)
    assert abs(base.slope - slope) < 1e-9
    assert abs(base.intercept - intercept) < 1e-9
    assert abs(base.r - r) < 1e-9

    assert (a2a.n_points, a2a.n_kept, a2a.n_dropped) == (6, 6, 0)
    slope, intercept, r = expected_fit(A2A_CV, A2A_TPOT, INDICES)
    assert abs(a2a.slope - slope) < 1e-9
    assert abs(a2a.intercept - intercept) < 1e-9
    assert abs(a2a.r - r) < 1e-9
    # each point's x is the CV of the same dataset index
    assert dict(zip(a2a.indices.tolist(), a2a.x.tolist())) == A2A_CV
    assert dict(zip(a2a.indices.tolist(), a2a.y.tolist())) == A2A_TPOT


def test_real_imbalance_no_outlier_filter_and_k(study, tmp_path):
    base, _ = real_plot.plot_metric_vs_real_imbalance(
        str(study["base_imb"]), str(study["base_res"]), str(study["a2a_imb"]), str(study["a2a_res"]),
        "mean_tpot_ms", str(tmp_path / "all.png"), outlier_filter=False)
    assert (base.n_kept, base.n_dropped) == (6, 0)
    slope, _, _ = expected_fit(BASE_CV, BASE_TPOT, INDICES)
    assert abs(base.slope - slope) < 1e-9
    # a huge k keeps the outlier as well
    base, _ = real_plot.plot_metric_vs_real_imbalance(
        str(study["base_imb"]), str(study["base_res"]), str(study["a2a_imb"]), str(study["a2a_res"]),
        "mean_tpot_ms", str(tmp_path / "k.png"), iqr_k=100.0)
    assert base.n_dropped == 0


def test_real_imbalance_main_prints_table(study, tmp_path, capsys):
    out = tmp_path / "main.png"
    assert real_plot.main(real_argv(study, out)) == 0
    assert_png(out)
    stdout = capsys.readouterr().out
    row = table_row(stdout, "Baseline (TP)")
    assert row[:3] == ["6", "5", "1"]
    slope, intercept, r = expected_fit(BASE_CV, BASE_TPOT, [i for i in INDICES if i != OUTLIER])
    assert float(row[3]) == pytest.approx(slope, rel=1e-5)
    assert float(row[4]) == pytest.approx(intercept, rel=1e-5)
    assert float(row[5]) == pytest.approx(r, rel=1e-5)
    row = table_row(stdout, "DefaultAll2All (EP)")
    assert row[:3] == ["6", "6", "0"]


def test_real_imbalance_unmatched_indices_warn(study, tmp_path, capsys):
    cv = {i: v for i, v in BASE_CV.items() if i != 12}
    write_imbalance(study["base_imb"], cv, extra={"gates_logs_44": 0.9})
    out = tmp_path / "partial.png"
    assert real_plot.main(real_argv(study, out, "--no-outlier-filter")) == 0
    captured = capsys.readouterr()
    assert "12" in captured.err and "44" in captured.err and "warning" in captured.err
    row = table_row(captured.out, "Baseline (TP)")
    assert row[:3] == ["5", "5", "0"]
    slope, _, _ = expected_fit(BASE_CV, BASE_TPOT, [i for i in INDICES if i != 12])
    assert float(row[3]) == pytest.approx(slope, rel=1e-5)


def test_real_imbalance_throughput_metric(study, tmp_path):
    base, a2a = real_plot.plot_metric_vs_real_imbalance(
        str(study["base_imb"]), str(study["base_res"]), str(study["a2a_imb"]), str(study["a2a_res"]),
        "output_throughput", str(tmp_path / "thr.png"))
    ys = {i: 1000.0 - i for i in INDICES}
    slope, _, _ = expected_fit(BASE_CV, ys, INDICES)
    assert base.n_dropped == 0 and abs(base.slope - slope) < 1e-9


@pytest.mark.parametrize("breakage, named", [
    ("missing_results_dir", "no_such_results"),
    ("missing_imbalance_file", "missing_imbalance.json"),
    ("malformed_imbalance", "baseline_real_imbalance.json"),
    ("wrong_imbalance_key", "completed"),
    ("missing_metric", "p95_tpot_ms"),
])
def test_real_imbalance_bad_input_exits_nonzero(study, tmp_path, capsys, breakage, named):
    argv = real_argv(study, tmp_path / "bad.png")
    if breakage == "missing_results_dir":
        argv[argv.index("--baseline-results") + 1] = str(tmp_path / "no_such_results")
    elif breakage == "missing_imbalance_file":
        argv[argv.index("--all2all-imbalance") + 1] = str(tmp_path / "missing_imbalance.json")
    elif breakage == "malformed_imbalance":
        study["base_imb"].write_text('{"gates_logs_03": 0.1,')
    elif breakage == "wrong_imbalance_key":
        study["base_imb"].write_text(json.dumps({"completed": 100}))
    elif breakage == "missing_metric":
        argv += ["--metric", "p95_tpot_ms"]
    assert real_plot.main(argv) != 0
    err = capsys.readouterr().err
    assert "error" in err and named in err
    if breakage == "missing_metric":
        assert "003.json" in err and "mean_tpot_ms" in err   # names the file and lists what exists
    assert not (tmp_path / "bad.png").exists()


def test_real_imbalance_negative_k_is_usage_error(study, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        real_plot.main(real_argv(study, tmp_path / "x.png", "--iqr-k", "-1"))
    assert exc.value.code == 2
    assert "--iqr-k" in capsys.readouterr().err


# ---------------------------------------------------------------- metric vs predicted score

def test_imbalance_score_counts_and_slopes(study, tmp_path, capsys):
    out = tmp_path / "score.png"
    assert score_plot.main(["--baseline-results", str(study["base_res"]),
                            "--all2all-results", str(study["a2a_res"]),
                            "--metric", "mean_tpot_ms", "--output", str(out)]) == 0
    assert_png(out)
    assert table_row(capsys.readouterr().out, "Baseline (TP)")[:3] == ["6", "5", "1"]

    base, a2a = score_plot.plot_metric_vs_imbalance_score(
        str(study["base_res"]), str(study["a2a_res"]), "mean_tpot_ms", str(tmp_path / "score2.png"))
    kept = [i for i in INDICES if i != OUTLIER]
    assert base.kept_indices == kept and base.dropped_indices == [OUTLIER]
    slope, intercept, r = expected_fit(SCORE, BASE_TPOT, kept)
    assert abs(base.slope - slope) < 1e-9 and abs(base.intercept - intercept) < 1e-9
    assert abs(base.r - r) < 1e-9
    slope, _, _ = expected_fit(SCORE, A2A_TPOT, INDICES)
    assert a2a.n_kept == 6 and abs(a2a.slope - slope) < 1e-9


def test_imbalance_score_missing_score_names_file(study, tmp_path, capsys):
    path = study["a2a_res"] / "033.json"
    rec = json.loads(path.read_text())
    del rec["predicted_imbalance_score"]
    path.write_text(json.dumps(rec))
    rc = score_plot.main(["--baseline-results", str(study["base_res"]),
                          "--all2all-results", str(study["a2a_res"]), "--output", str(tmp_path / "s.png")])
    assert rc == 1
    err = capsys.readouterr().err
    assert "033.json" in err and "predicted_imbalance_score" in err


def test_imbalance_score_empty_results_dir(study, tmp_path, capsys):
    empty = tmp_path / "empty_results"
    empty.mkdir()
    rc = score_plot.main(["--baseline-results", str(empty), "--all2all-results", str(study["a2a_res"]),
                          "--output", str(tmp_path / "s.png")])
    assert rc == 1
    assert "empty_results" in capsys.readouterr().err


# ---------------------------------------------------------------- sweep_plot

SWEEP_CSV = """\
parallel.mode,workload.requests,workload.dataset,mean_ttft_ms,p99_tpot_ms,status
tp,8,007_0.1944.jsonl,10.0,1.5,ok
ep,8,007_0.1944.jsonl,12.0,1.7,ok
tp,32,007_0.1944.jsonl,30.0,3.5,ok
ep,32,007_0.1944.jsonl,25.0,2.9,ok
tp,16,007_0.1944.jsonl,20.0,2.5,ok
ep,16,007_0.1944.jsonl,999.0,99.0,failed
ep,16,007_0.1944.jsonl,18.0,2.1,ok
"""


@pytest.fixture
def sweep_csv(tmp_path):
    path = tmp_path / "sweep.csv"
    path.write_text(SWEEP_CSV)
    return path


def test_sweep_two_groups_numeric_x_sorted(sweep_csv, tmp_path):
    out = tmp_path / "sweep.png"
    data = sweep_plot.plot_sweep(str(sweep_csv), "workload.requests", "mean_ttft_ms",
                                 group="parallel.mode", output=str(out))
    assert_png(out)
    assert data["x_numeric"] and data["categories"] is None
    assert data["rows"] == 6                                   # the failed row is left out
    assert [s["group"] for s in data["series"]] == ["tp", "ep"]
    assert [s["label"] for s in data["series"]] == ["parallel.mode=tp", "parallel.mode=ep"]
    tp, ep = data["series"]
    assert np.array_equal(tp["x"], [8, 16, 32]) and np.array_equal(tp["y"], [10.0, 20.0, 30.0])
    assert np.array_equal(ep["x"], [8, 16, 32]) and np.array_equal(ep["y"], [12.0, 18.0, 25.0])
    assert 999.0 not in ep["y"]


def test_sweep_categorical_x_and_numeric_groups(sweep_csv, tmp_path):
    data = sweep_plot.plot_sweep(str(sweep_csv), "parallel.mode", "p99_tpot_ms",
                                 group="workload.requests", output=str(tmp_path / "cat.png"),
                                 kind="scatter")
    assert_png(tmp_path / "cat.png")
    assert not data["x_numeric"]
    assert data["categories"] == ["tp", "ep"]                  # order of first appearance
    assert [s["group"] for s in data["series"]] == ["8", "16", "32"]   # numeric groups ascending
    s16 = data["series"][1]
    assert s16["x"] == ["tp", "ep"] and np.array_equal(s16["x_pos"], [0, 1])
    assert np.array_equal(s16["y"], [2.5, 2.1])
    # dataset paths in one folder are labelled by file name
    assert sweep_plot.short_categories(["datasets/imbalance/007_0.1944.jsonl", "datasets/imbalance/050_0.1373.jsonl"]) \
        == (["007_0.1944.jsonl", "050_0.1373.jsonl"], "datasets/imbalance")
    assert sweep_plot.short_categories(["tp", "ep"]) == (["tp", "ep"], "")


def test_sweep_single_series_line_means(tmp_path):
    path = tmp_path / "sweep.csv"
    path.write_text("workload.requests,mean_ttft_ms,status\n4,1.0,ok\n2,5.0,ok\n4,3.0,ok\n2,7.0,error\n")
    data = sweep_plot.plot_sweep(str(path), "workload.requests", "mean_ttft_ms",
                                 output=str(tmp_path / "one.png"))
    assert len(data["series"]) == 1
    s = data["series"][0]
    assert np.array_equal(s["x"], [2, 4, 4]) and np.array_equal(s["y"], [5.0, 1.0, 3.0])
    assert np.array_equal(s["line_x"], [2, 4]) and np.array_equal(s["line_y"], [5.0, 2.0])


def test_sweep_missing_column_lists_available(sweep_csv, tmp_path, capsys):
    rc = sweep_plot.main([str(sweep_csv), "--x", "workload.requests", "--y", "p99_itl_ms",
                          "--output", str(tmp_path / "m.png")])
    assert rc == 1
    err = capsys.readouterr().err
    assert "p99_itl_ms" in err and str(sweep_csv) in err
    for col in ("parallel.mode", "workload.requests", "mean_ttft_ms", "status"):
        assert col in err
    assert not (tmp_path / "m.png").exists()
    rc = sweep_plot.main([str(sweep_csv), "--x", "workload.requests", "--y", "mean_ttft_ms",
                          "--group", "parallel.ep_size", "--output", str(tmp_path / "g.png")])
    assert rc == 1 and "parallel.ep_size" in capsys.readouterr().err


def test_sweep_missing_file_and_bad_values(tmp_path, capsys):
    missing = tmp_path / "nowhere" / "sweep.csv"
    rc = sweep_plot.main([str(missing), "--x", "a", "--y", "b", "--output", str(tmp_path / "x.png")])
    assert rc == 1 and str(missing) in capsys.readouterr().err

    bad = tmp_path / "bad.csv"
    bad.write_text("parallel.mode,mean_ttft_ms,status\ntp,fast,ok\n")
    rc = sweep_plot.main([str(bad), "--x", "parallel.mode", "--y", "mean_ttft_ms",
                          "--output", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert rc == 1 and "bad.csv" in err and "line 2" in err and "fast" in err

    none_ok = tmp_path / "none_ok.csv"
    none_ok.write_text("parallel.mode,mean_ttft_ms,status\ntp,1.0,failed\n")
    rc = sweep_plot.main([str(none_ok), "--x", "parallel.mode", "--y", "mean_ttft_ms",
                          "--output", str(tmp_path / "x.png")])
    assert rc == 1 and "none_ok.csv" in capsys.readouterr().err


# ---------------------------------------------------------------- the scripts as programs

@pytest.mark.parametrize("script", SCRIPTS)
def test_script_is_executable_with_help(script):
    path = os.path.join(ANALYSIS_DIR, script)
    assert os.access(path, os.X_OK), f"{path} is not executable"
    with open(path) as f:
        assert f.readline().rstrip("\n") == "#!/usr/bin/python3"
    proc = subprocess.run([path, "--help"], capture_output=True, text=True, cwd="/", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout and "--output" in proc.stdout


def test_script_runs_as_program(study, tmp_path):
    out = tmp_path / "prog.png"
    proc = subprocess.run([sys.executable, os.path.join(ANALYSIS_DIR, SCRIPTS[0]),
                           *real_argv(study, out, "--metric", "mean_tpot_ms")],
                          capture_output=True, text=True, cwd="/", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert_png(out)
    assert table_row(proc.stdout, "Baseline (TP)")[:3] == ["6", "5", "1"]
    proc = subprocess.run([sys.executable, os.path.join(ANALYSIS_DIR, SCRIPTS[0]),
                           *real_argv(study, out, "--metric", "nope_ms")],
                          capture_output=True, text=True, cwd="/", timeout=120)
    assert proc.returncode == 1 and "nope_ms" in proc.stderr
