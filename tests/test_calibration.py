import numpy as np
import pytest

from pipeline.scoring.calibration import bonafide_probability, fit_calibration, to_llr
from pipeline.scoring.metrics import act_dcf, cllr, min_dcf


def gaussian_scores(n_bonafide=4000, n_spoof=8000, seed=0, centre=0.3, spread=0.2):
    """Raw scores whose true LLR is known: bona fide N(centre + spread, s), spoof N(centre - spread, s)
    with s = 0.25, so LLR(x) = 2 * spread / s^2 * (x - centre)."""
    rng = np.random.default_rng(seed)
    s = 0.25
    return rng.normal(centre + spread, s, n_bonafide), rng.normal(centre - spread, s, n_spoof), \
        (2 * spread / s ** 2, -2 * spread / s ** 2 * centre)


def test_calibration_recovers_the_true_log_likelihood_ratio():
    bonafide, spoof, (scale, offset) = gaussian_scores()
    calibration = fit_calibration(bonafide, spoof)
    assert calibration["scale"] == pytest.approx(scale, rel=0.05)
    assert calibration["offset"] == pytest.approx(offset, abs=0.1)
    # the class proportions and the prior the fit weights to do not move the LLR
    other = fit_calibration(bonafide[:1000], spoof, prior=0.2)
    assert other["scale"] == pytest.approx(scale, rel=0.08)
    assert other["offset"] == pytest.approx(offset, abs=0.2)


def test_calibrated_scores_decide_near_the_best_threshold_and_raw_ones_do_not():
    bonafide, spoof, _ = gaussian_scores(seed=1)
    calibration = fit_calibration(bonafide, spoof)
    llr_b, llr_s = to_llr(calibration, bonafide), to_llr(calibration, spoof)
    best = min_dcf(bonafide, spoof)
    assert act_dcf(llr_b, llr_s) == pytest.approx(best, abs=0.02)
    assert act_dcf(bonafide, spoof) > best + 0.2       # raw cosines read as LLRs: wrong threshold
    assert cllr(llr_b, llr_s) < cllr(bonafide, spoof)


def test_probability_of_bona_fide_at_a_stated_prior():
    assert bonafide_probability(0.0, 0.5) == pytest.approx(0.5)
    assert bonafide_probability(np.log(9), 0.5) == pytest.approx(0.9)
    assert bonafide_probability(0.0, 0.95) == pytest.approx(0.95)
    assert np.isfinite(bonafide_probability(np.array([-1e4, 1e4]), 0.5)).all()


def test_perfectly_separated_dev_scores_still_give_a_finite_calibration():
    calibration = fit_calibration(np.array([0.5, 0.6, 0.7]), np.array([-0.5, -0.4, 0.1]))
    assert np.isfinite(calibration["scale"]) and calibration["scale"] > 0


def test_a_model_worse_than_chance_on_dev_gets_no_information_not_an_inverted_calibration():
    calibration = fit_calibration(np.array([-0.5, -0.3, 0.0]), np.array([0.2, 0.4, -0.1]))
    assert calibration["scale"] == 0.0
    llr = to_llr(calibration, np.array([-1.0, 1.0]))
    assert (llr == 0.0).all() and cllr(llr[:1], llr[1:]) == pytest.approx(1.0)
