"""Affine calibration: a detector's raw scores -> natural-log likelihood ratios (LLRs).

llr = scale * score + offset, fitted by logistic regression on dev scores with the two classes
weighted to an explicit prior (0.5 by default), the usual linear calibration of speaker and
spoofing detectors. An LLR is what the actual-cost metrics (actDCF, Cllr) judge and what a
Bayes decision needs: accept as bona fide where llr >= log(Cfa * P(spoof) / (Cmiss * P(bona fide))).
"""
from __future__ import annotations

import math

import numpy as np

from pipeline.scoring.metrics import ScoreError, check_scores

# Inverse regularisation of the fit. Weak enough to leave any usable score set as it is; when dev
# separates the classes perfectly, it keeps the slope finite instead of letting it run to infinity.
_C = 1e4


def fit_calibration(bonafide: np.ndarray, spoof: np.ndarray, prior: float = 0.5) -> dict:
    """{"scale", "offset", "prior"}: scale * score + offset is the LLR of bona fide vs spoof.
    `prior` is P(bona fide) the fit weights the classes to; the LLR itself does not depend on it."""
    from sklearn.linear_model import LogisticRegression

    bonafide, spoof = np.asarray(bonafide, float), np.asarray(spoof, float)
    check_scores(bonafide, spoof)
    if not 0 < prior < 1:
        raise ScoreError(f"calibration prior must be in (0, 1), got {prior}")
    x = np.concatenate([bonafide, spoof])[:, None]
    y = np.concatenate([np.ones(len(bonafide)), np.zeros(len(spoof))])
    # Each class weighs its prior in total, so the regression's log-odds are the LLR + logit(prior).
    weight = np.where(y == 1, prior / len(bonafide), (1 - prior) / len(spoof)) * len(y)
    regression = LogisticRegression(C=_C).fit(x, y, sample_weight=weight)
    scale, intercept = float(regression.coef_[0, 0]), float(regression.intercept_[0])
    if scale <= 0:
        # Dev scores higher for spoofs than for bona fide: the model is no better than chance there,
        # and a calibration must not turn its scores around. LLR 0 for everything = no information.
        return {"scale": 0.0, "offset": 0.0, "prior": prior}
    return {"scale": scale, "offset": intercept - math.log(prior / (1 - prior)), "prior": prior}


def to_llr(calibration: dict, scores: np.ndarray) -> np.ndarray:
    return calibration["scale"] * np.asarray(scores, float) + calibration["offset"]


def bonafide_probability(llr: np.ndarray, prior_bonafide: float) -> np.ndarray:
    """P(bona fide | audio) for an LLR at a stated prior: sigmoid(llr + logit(prior))."""
    log_odds = np.asarray(llr, float) + math.log(prior_bonafide / (1 - prior_bonafide))
    return np.exp(-np.logaddexp(0.0, -log_odds))
