"""Detection metrics computed the way the official ASVspoof tools compute them.

DET points come from the pooled scores sorted stably with bona fide before spoof on ties,
one point before the first score and one after each; the EER is the mean of the miss and
false-alarm rates at the first point that minimises their difference.
"""
from __future__ import annotations

import numpy as np


class ScoreError(ValueError):
    pass


def check_scores(bonafide: np.ndarray, spoof: np.ndarray) -> None:
    if len(bonafide) == 0 or len(spoof) == 0:
        raise ScoreError(f"need scores of both classes (got {len(bonafide)} bona fide, {len(spoof)} spoof)")
    scores = np.concatenate([bonafide, spoof])
    if not np.all(np.isfinite(scores)):
        raise ScoreError("scores contain NaN or infinite values")


def det_curve(bonafide: np.ndarray, spoof: np.ndarray):
    """(miss rates, false-alarm rates, thresholds); a trial is accepted when score > threshold."""
    bonafide, spoof = np.asarray(bonafide, float), np.asarray(spoof, float)
    check_scores(bonafide, spoof)
    scores = np.concatenate([bonafide, spoof])
    labels = np.concatenate([np.ones(len(bonafide)), np.zeros(len(spoof))])
    order = np.argsort(scores, kind="mergesort")
    labels = labels[order]
    bonafide_below = np.cumsum(labels)
    spoof_above = len(spoof) - (np.arange(1, len(scores) + 1) - bonafide_below)
    miss = np.concatenate([[0.0], bonafide_below / len(bonafide)])
    false_alarm = np.concatenate([[1.0], spoof_above / len(spoof)])
    thresholds = np.concatenate([[scores[order[0]] - 0.001], scores[order]])
    return miss, false_alarm, thresholds


def compute_eer(bonafide: np.ndarray, spoof: np.ndarray) -> tuple[float, float]:
    """(EER as a fraction, the threshold where it is reached)."""
    miss, false_alarm, thresholds = det_curve(bonafide, spoof)
    i = int(np.argmin(np.abs(miss - false_alarm)))
    return float((miss[i] + false_alarm[i]) / 2), float(thresholds[i])


# ASVspoof 2019 t-DCF cost model (Kinnunen et al., 2018; the official evaluation package).
COST_MODEL = {"Pspoof": 0.05, "Ptar": 0.95 * 0.99, "Pnon": 0.95 * 0.01,
              "Cmiss_asv": 1.0, "Cfa_asv": 10.0, "Cmiss_cm": 1.0, "Cfa_cm": 10.0}
# The official ASV system's error rates on ASVspoof 2019 LA eval, used when no ASV score file is given.
DEFAULT_ASV = {"Pfa_asv": 0.0246047, "Pmiss_asv": 0.0245810, "Pmiss_spoof_asv": 0.2393475}


def min_tdcf(bonafide: np.ndarray, spoof: np.ndarray, asv: dict = DEFAULT_ASV,
             cost: dict = COST_MODEL) -> float:
    """Minimum normalised t-DCF (ASVspoof 2019) over the CM thresholds of det_curve."""
    miss, false_alarm, _ = det_curve(bonafide, spoof)
    c1 = cost["Ptar"] * (cost["Cmiss_cm"] - cost["Cmiss_asv"] * asv["Pmiss_asv"]) \
        - cost["Pnon"] * cost["Cfa_asv"] * asv["Pfa_asv"]
    c2 = cost["Cfa_cm"] * cost["Pspoof"] * (1 - asv["Pmiss_spoof_asv"])
    if c1 <= 0 or c2 <= 0:
        raise ScoreError("the ASV operating point gives a non-positive t-DCF weight; check the ASV error rates")
    return float(np.min((c1 * miss + c2 * false_alarm) / min(c1, c2)))
