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
