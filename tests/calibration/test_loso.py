"""The leave-one-source-out fit of tests/calibration/loso.py, and fit.yaml against the cards."""
import copy
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import loso  # noqa: E402


def synthetic(x_true):
    """Rows of three sources over two constants: A and B each see one constant, C sees both."""
    keys = [("a", "a1", "m"), ("a", "a2", "m"), ("b", "b1", "m"), ("c", "c1", "m")]
    J = np.array([[-1.0, 0.0], [-0.5, 0.0], [0.0, 1.0], [-0.3, 0.4]])
    e0 = -J @ x_true  # errors at the current values of a model that is exactly log-linear
    return keys, e0, J, np.ones(len(keys))


def test_a_fit_on_every_source_recovers_the_constants_of_an_exactly_log_linear_model():
    x_true = np.array([0.2, -0.1])
    keys, e0, J, w = synthetic(x_true)
    x = loso.fit(keys, e0, J, w, np.zeros(2), np.array([1e3, 1e3]), lambda k: True)
    assert np.allclose(x, x_true, atol=1e-6)


def test_holding_out_the_only_source_of_a_constant_leaves_the_others_to_set_it():
    x_true = np.array([0.2, -0.1])
    keys, e0, J, w = synthetic(x_true)
    x = loso.fit(keys, e0, J, w, np.zeros(2), np.array([1e3, 1e3]), lambda k: k[0] != "a")
    # without source a, constant 0 is set by source c alone (given constant 1 from b): still exact
    assert np.allclose(x, x_true, atol=1e-5)
    x = loso.fit(keys, e0, J, w, np.array([0.05, 0.0]), np.array([0.1, 1e3]), lambda k: k[0] == "b")
    # only source b: constant 0 stays at its prior, constant 1 is fitted exactly
    assert math.isclose(x[0], 0.05, abs_tol=1e-9) and math.isclose(x[1], -0.1, abs_tol=1e-6)


def test_a_prior_pulls_the_fit_by_its_weight():
    keys = [("a", "a1", "m")]
    J = np.array([[1.0]])
    e0 = np.array([-0.2])  # the row wants x = 0.2; the prior says 0 with sd 1: the fit halves it
    x = loso.fit(keys, e0, J, np.ones(1), np.zeros(1), np.ones(1), lambda k: True)
    assert math.isclose(x[0], 0.1, rel_tol=1e-9)


def test_fit_yaml_agrees_with_the_cards():
    doc, constants = loso.load_fit()
    assert loso.check(doc, constants) == []


def test_check_names_a_fitted_card_field_that_fit_yaml_leaves_out():
    doc, constants = loso.load_fit()
    dropped = [c for c in constants if c.name != "ib-ndr400.collective_latency_us"]
    problems = loso.check(doc, dropped)
    assert any("ib-ndr400.yaml: collective_latency_us says it is fitted" in p for p in problems)


def test_check_names_a_prior_outside_its_bounds_and_an_unknown_source():
    doc, constants = loso.load_fit()
    bad = copy.deepcopy(constants[0])
    bad.prior = bad.hi * 2
    bad.fitted_on = ["nowhere"]
    problems = loso.check(doc, [bad] + constants[1:])
    assert any("outside bounds" in p for p in problems) and any("unknown source nowhere" in p for p in problems)


def test_every_row_family_is_classified():
    doc, _ = loso.load_fit()
    for family in doc["sources"]:
        gpu, model = loso.classify(doc, family, {"mlenergy": "Qwen3-30B-A3B 1xH100 batch 8",
                                                 "splitwise": "H100-80GB Mixtral-8x7B TP4",
                                                 "mlenergy_v2": "Llama-3.1-8B 1xH100 TP1 batch 64"}.get(family, "x"))
        assert gpu and model
