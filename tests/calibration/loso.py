#!/usr/bin/python3
"""Fits the calibration constants and validates them leave-one-source-out.

tests/calibration/fit.yaml lists every constant that calibration rows set: the card fields (or
engine defaults) it lives in, its prior (a value from sources no row comes from, with how far the
rows may pull it) and the calibration sources (row families) that fit it. This script

  1. runs every calibration row (`ctest -L calibration`, slow rows included) at the current values;
  2. runs them again with each constant raised by 5%, for the sensitivity of every row's
     log(simulated) to every constant's log;
  3. fits the constants to all fitting rows at once and, for each source, to every fitting row
     but that source's (one Gauss-Newton step from the current values on the log errors, each row
     weighted by its tolerance, each constant held to its prior);
  4. runs every row again at each fitted set and reports, for each source, the errors of its own
     rows with the constants fitted without it (leave-one-source-out), and their median and
     maximum per GPU, model family and metric.

The held-out errors in the report come from those reruns, not from the linearisation. The runs
read copies of the cards ($MOESIM_HOME) and engine overrides ($MOESIM_CALIBRATION_SET_<FAMILY>),
so the source tree is never touched. It writes tests/calibration/LOSO.md, which make_report.py
puts into REPORT.md.

usage: loso.py BUILD_DIR [--jobs N] [--output tests/calibration/LOSO.md]
       loso.py --check          (fit.yaml agrees with the cards; fast, run by the test suite)
Needs python3-numpy and python3-yaml (Debian).
"""
import argparse
import csv
import datetime
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

import numpy as np
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FIT_FILE = os.path.join(HERE, "fit.yaml")
STEP = 0.05  # relative step of the sensitivity runs


# ---- fit.yaml ------------------------------------------------------------------------------------

class Constant:
    def __init__(self, d):
        self.name = d["name"]
        self.cards = d.get("cards", [])
        self.key = d.get("key")
        self.set = d.get("set")
        self.set_families = d.get("families", [])
        self.value = d.get("value")  # engine constants: the value in code, or in `scenarios`
        self.scenarios = d.get("scenarios", [])
        self.prior = float(d["prior"])
        self.prior_sd = float(d["prior_sd"])
        self.prior_source = d["prior_source"]
        self.fitted_on = d["fitted_on"]
        self.lo, self.hi = (float(b) for b in d["bounds"])


def load_fit(path=FIT_FILE):
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    return doc, [Constant(c) for c in doc["constants"]]


def card_value(card_path, key):
    with open(os.path.join(ROOT, card_path), encoding="utf-8") as f:
        for line in f:
            m = re.match(rf"^{re.escape(key)}:\s*([-+0-9.eE]+)\s*$", line)
            if m:
                return float(m.group(1))
    raise KeyError(f"{card_path}: no top-level numeric key {key}")


def card_provenance(card_path, key):
    with open(os.path.join(ROOT, card_path), encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    for section in ("sources", "estimates"):
        if key in (doc.get(section) or {}):
            return section, doc[section][key]
    return None, None


def current_value(c):
    if c.cards:
        return card_value(c.cards[0], c.key)
    return float(c.value)


def check(doc, constants):
    """Problems with fit.yaml against the cards: returns a list of messages."""
    problems = []
    families = set(doc["sources"])
    for c in constants:
        if bool(c.cards) == bool(c.set):
            problems.append(f"{c.name}: give either cards+key or set+families")
            continue
        if not c.lo < c.hi or not c.lo <= c.prior <= c.hi or c.prior_sd <= 0:
            problems.append(f"{c.name}: prior {c.prior} (sd {c.prior_sd}) outside bounds [{c.lo}, {c.hi}]")
        for fam in c.fitted_on + c.set_families:
            if fam not in families:
                problems.append(f"{c.name}: unknown source {fam} (sources: {', '.join(sorted(families))})")
        values = set()
        for card in c.cards:
            try:
                v = card_value(card, c.key)
            except (KeyError, OSError) as e:
                problems.append(f"{c.name}: {e}")
                continue
            values.add(v)
            if not c.lo <= v <= c.hi:
                problems.append(f"{card}: {c.key} {v} outside the bounds [{c.lo}, {c.hi}] of {c.name}")
            section, text = card_provenance(card, c.key)
            if section != "sources" or "fitted" not in text or "fit.yaml" not in text:
                problems.append(f"{card}: the provenance of {c.key} must be under sources, say 'fitted' and name "
                                f"tests/calibration/fit.yaml (it is {section}: {text!r})")
        if len(values) > 1:
            problems.append(f"{c.name}: its cards disagree: {sorted(values)}")
        field = c.set.split(".")[-1] if c.set else ""
        for sc in c.scenarios:
            try:
                with open(os.path.join(ROOT, sc), encoding="utf-8") as f:
                    got = yaml.safe_load(f)
            except OSError as e:
                problems.append(f"{c.name}: {e}")
                continue
            for part in c.set.split("."):
                got = got.get(part) if isinstance(got, dict) else None
            if got is None or float(got) != float(c.value):
                problems.append(f"{sc}: {c.set} is {got}, not the value {c.value} of {c.name}")
        if c.set and not c.scenarios:
            defaults = open(os.path.join(ROOT, "sim/config/scenario.hpp"), encoding="utf-8").read()
            m = re.search(rf"\b{re.escape(field)}\s*=\s*([-+0-9.eE]+)\s*;", defaults)
            if not m or float(m.group(1)) != float(c.value):
                problems.append(f"{c.name}: value {c.value} is not the default of {field} in sim/config/scenario.hpp")
    declared = {(card, c.key) for c in constants for card in c.cards}
    for sub in ("models/gpu/cards", "models/network/cards", "models/llm/cards"):
        for name in sorted(os.listdir(os.path.join(ROOT, sub))):
            with open(os.path.join(ROOT, sub, name), encoding="utf-8") as f:
                card = yaml.safe_load(f)
            for key, text in (card.get("sources") or {}).items():
                if re.search(r"(?<!not )\bfitted\b", str(text)) and (f"{sub}/{name}", key) not in declared:
                    problems.append(f"{sub}/{name}: {key} says it is fitted but tests/calibration/fit.yaml does not list it")
    return problems


# ---- running the rows ----------------------------------------------------------------------------

def read_rows(directory):
    rows = {}
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".csv"):
            continue
        with open(os.path.join(directory, name), newline="", encoding="utf-8") as f:
            for r in csv.DictReader(f):
                rows[(r["family"], r["anchor"], r["metric"])] = {
                    "published": float(r["published"]), "simulated": float(r["simulated"]),
                    "tolerance": float(r["tolerance_pct"]), "known_gap": r["pass"] == "known_gap"}
    return rows


def run_rows(build_dir, constants, values, jobs, label, tests):
    """Every calibration row with the constants at `values` (name -> value)."""
    work = tempfile.mkdtemp(prefix="moesim-loso-")
    try:
        home = os.path.join(work, "home")
        for sub in ("models/gpu/cards", "models/network/cards", "models/llm/cards"):
            shutil.copytree(os.path.join(ROOT, sub), os.path.join(home, sub))
        os.symlink(os.path.join(ROOT, "datasets"), os.path.join(home, "datasets"))
        env = dict(os.environ, MOESIM_HOME=home, MOESIM_CALIBRATION_OUT=os.path.join(work, "out"),
                   MOESIM_CALIBRATION_FULL="1")
        sets = {}
        for c in constants:
            v = values[c.name]
            for card in c.cards:
                path = os.path.join(home, card)
                text = open(path, encoding="utf-8").read()
                text, n = re.subn(rf"(?m)^{re.escape(c.key)}:.*$", f"{c.key}: {v!r}", text)
                assert n == 1, (card, c.key)
                open(path, "w", encoding="utf-8").write(text)
            for fam in c.set_families:
                sets.setdefault(fam, []).append(f"{c.set}={v!r}")
        for fam, items in sets.items():
            env["MOESIM_CALIBRATION_SET_" + fam.upper()] = ";".join(items)
        print(f"loso: {label}", flush=True)
        subprocess.run(["ctest", "-j", str(jobs), "-L", "calibration", "-R", tests, "-Q"], cwd=build_dir, env=env, check=False)
        return read_rows(os.path.join(work, "out"))
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---- the fit -------------------------------------------------------------------------------------

def fit(keys, e0, J, weights, x_prior, prior_sd, use):
    """One Gauss-Newton step: x (log change of each constant) minimising
    sum over rows in `use` of w^2 (e0 + J x)^2 + sum over constants ((x - x_prior) / sd)^2."""
    rows = [i for i, k in enumerate(keys) if use(k)]
    A = np.vstack([J[rows] * weights[rows, None], np.diag(1.0 / prior_sd)])
    b = np.concatenate([-e0[rows] * weights[rows], x_prior / prior_sd])
    x, *_ = np.linalg.lstsq(A, b, rcond=None)
    return x


def classify(doc, family, anchor):
    for rule in doc["classify"]:
        if rule.get("family", family) == family and re.search(rule.get("anchor", ""), anchor):
            return rule["gpu"], rule["model"]
    raise ValueError(f"fit.yaml classify: no rule for {family} / {anchor}")


def main_fit(args):
    doc, constants = load_fit()
    problems = check(doc, constants)
    if problems:
        sys.exit("fit.yaml:\n  " + "\n  ".join(problems))
    v0 = {c.name: current_value(c) for c in constants}
    sources = sorted(args.only.split(",")) if args.only else sorted(doc["sources"])
    for s in sources:
        if s not in doc["sources"]:
            sys.exit(f"--only: unknown source {s} (sources: {', '.join(sorted(doc['sources']))})")
    tests = "|".join(f"({doc['sources'][s]['tests']})" for s in sources)
    run = lambda values, label: run_rows(args.build_dir, constants, values, args.jobs, label, tests)
    base = run(v0, "every row at the current values")
    if not base:
        sys.exit("loso: the calibration tests wrote no rows (is BUILD_DIR built?)")
    keys = sorted(base)
    for fam in {k[0] for k in keys}:
        if fam not in doc["sources"]:
            sys.exit(f"fit.yaml: row family {fam} has no entry under sources")
    e0 = np.array([math.log(base[k]["simulated"] / base[k]["published"]) for k in keys])
    J = np.zeros((len(keys), len(constants)))
    for j, c in enumerate(constants):
        vals = dict(v0)
        vals[c.name] = v0[c.name] * (1 + STEP)
        rows = run(vals, f"sensitivity to {c.name}")
        if set(rows) != set(base):
            sys.exit(f"loso: the run raising {c.name} wrote other rows than the first run")
        for i, k in enumerate(keys):
            J[i, j] = (math.log(rows[k]["simulated"] / base[k]["published"]) - e0[i]) / math.log(1 + STEP)
    weights = np.array([100.0 / base[k]["tolerance"] for k in keys])
    x_prior = np.array([math.log(c.prior / v0[c.name]) for c in constants])
    prior_sd = np.array([c.prior_sd for c in constants])
    fitting = set().union(*(c.fitted_on for c in constants))

    def fitted_values(held_out):
        use = lambda k: k[0] in fitting and k[0] != held_out and not base[k]["known_gap"]
        x = fit(keys, e0, J, weights, x_prior, prior_sd, use)
        return {c.name: min(max(v0[c.name] * math.exp(x[j]), c.lo), c.hi) for j, c in enumerate(constants)}

    all_fit = fitted_values(None)
    at_all = run(all_fit, "every row at the fit on every source")
    held = {}
    loso_values = {}
    for source in sources:
        loso_values[source] = fitted_values(source)
        rows = run(loso_values[source], f"fit without {source}")
        for k in keys:
            if k[0] == source:
                held[k] = rows[k]
    write_report(args.output, doc, constants, v0, all_fit, loso_values, keys, base, at_all, held, J)
    missing = [k for k in keys if k[0] in sources and k not in held]
    if missing:
        sys.exit(f"loso: no held-out run wrote {missing[0]}")
    if args.assert_max is not None:
        worst = max(held, key=lambda k: abs(err(held[k])))
        if abs(err(held[worst])) > args.assert_max:
            sys.exit(f"loso: held-out error {err(held[worst]):+.1f}% of {' / '.join(worst)} exceeds {args.assert_max}%")
        print(f"loso: every held-out error within {args.assert_max}% (largest {err(held[worst]):+.1f}%, {' / '.join(worst)})")


# ---- the report ----------------------------------------------------------------------------------

def err(row):
    return 100.0 * (row["simulated"] - row["published"]) / row["published"]


def summary_lines(groups):
    out = ["| group | rows | median abs error | max abs error |", "|---|---|---|---|"]
    for name in sorted(groups):
        e = [abs(x) for x in groups[name]]
        out.append(f"| {name} | {len(e)} | {statistics.median(e):.1f}% | {max(e):.1f}% |")
    return out


def fmt(v):
    return f"{v:.4g}"


def write_report(path, doc, constants, v0, all_fit, loso_values, keys, base, at_all, held, J):
    today = datetime.date.today().isoformat()
    fitting = sorted(set().union(*(c.fitted_on for c in constants)))
    L = [f"Produced by `make calibration-loso` (tests/calibration/loso.py) on {today}: every row run at the",
         "current card values, once per constant raised by 5%, at the fit on every fitting source, and at",
         "the fit without each source in turn. Fitting sources: " + ", ".join(fitting) +
         "; the others are test-only. Held-out errors are those reruns' errors on the held-out source's rows.",
         "", "### Constants", "",
         "| constant | prior (source) | card value | fit on all | " + " | ".join(f"fit without {s}" for s in sorted(loso_values)) + " |",
         "|---|---|---|---|" + "---|" * len(loso_values)]
    for c in constants:
        L.append(f"| {c.name} | {fmt(c.prior)} ±{c.prior_sd:.0%} ({c.prior_source}) | {fmt(v0[c.name])} | {fmt(all_fit[c.name])} | " +
                 " | ".join(fmt(loso_values[s][c.name]) for s in sorted(loso_values)) + " |")
    groups = {"all": [], }
    by = {"GPU": {}, "model family": {}, "metric": {}, "source": {}}
    L += ["", "### Rows", "", "| source | row | metric | published | current | fit on all | held out |", "|---|---|---|---|---|---|---|"]
    for k in keys:
        fam, anchor, metric = k
        gpu, model = classify(doc, fam, anchor)
        h = held.get(k)
        held_text = f"{err(h):+.1f}%" if h else "-"
        L.append(f"| {fam} | {anchor} | {metric} | {fmt(base[k]['published'])} | {err(base[k]):+.1f}% | {err(at_all[k]):+.1f}% | "
                 f"{held_text} |")
        if h is None:
            continue
        e = err(h)
        groups["all"].append(e)
        by["GPU"].setdefault(gpu, []).append(e)
        by["model family"].setdefault(model, []).append(e)
        by["metric"].setdefault(metric, []).append(e)
        by["source"].setdefault(fam, []).append(e)
    L += ["", "### Held-out errors", ""]
    L += summary_lines({"every row": groups["all"]})
    for title, g in by.items():
        L += ["", f"Per {title}:", ""] + summary_lines(g)
    text = "\n".join(L) + "\n"
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    print(f"loso: wrote {path}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("build_dir", nargs="?")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--output", default=os.path.join(HERE, "LOSO.md"))
    p.add_argument("--check", action="store_true", help="check fit.yaml against the cards and exit")
    p.add_argument("--only", help="comma-separated sources: run only their rows (a smoke run)")
    p.add_argument("--assert-max", type=float, help="fail when a held-out row's |error| exceeds this many percent")
    args = p.parse_args()
    if args.check:
        doc, constants = load_fit()
        problems = check(doc, constants)
        for m in problems:
            print("fit.yaml: " + m, file=sys.stderr)
        print(f"fit.yaml: {len(constants)} constants, {len(problems)} problems")
        sys.exit(1 if problems else 0)
    if not args.build_dir:
        p.error("BUILD_DIR is required")
    main_fit(args)


if __name__ == "__main__":
    main()
