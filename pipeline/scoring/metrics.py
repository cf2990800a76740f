"""Detection metrics computed the way the official ASVspoof tools compute them.

DET points come from the pooled scores sorted stably with bona fide before spoof on ties,
one point before the first score and one after each; the EER is the mean of the miss and
false-alarm rates at the first point that minimises their difference.
"""
from __future__ import annotations

import numpy as np

from pipeline.errors import PipelineError


class ScoreError(PipelineError, ValueError):
    pass


def check_scores(bonafide: np.ndarray, spoof: np.ndarray) -> None:
    if len(bonafide) == 0 or len(spoof) == 0:
        raise ScoreError(f"need scores of both classes (got {len(bonafide)} bona fide, {len(spoof)} spoof)")
    scores = np.concatenate([bonafide, spoof])
    if not np.all(np.isfinite(scores)):
        raise ScoreError("scores contain NaN or infinite values")
    if len(np.unique(scores)) < 3:
        raise ScoreError("fewer than 3 distinct scores: soft scores are needed, not decisions")


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


# ASVspoof 2019 t-DCF cost model (Kinnunen et al., Odyssey 2018; the 2019 evaluation plan).
COST_MODEL = {"Pspoof": 0.05, "Ptar": 0.95 * 0.99, "Pnon": 0.95 * 0.01,
              "Cmiss_asv": 1.0, "Cfa_asv": 10.0, "Cmiss_cm": 1.0, "Cfa_cm": 10.0}
# ASVspoof 2021's revised t-DCF (Kinnunen et al., TASLP 2020): costs of the tandem system.
COST_MODEL_2021 = {"Pspoof": 0.05, "Ptar": 0.95 * 0.99, "Pnon": 0.95 * 0.01,
                   "Cmiss": 1.0, "Cfa": 10.0, "Cfa_spoof": 10.0}
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


def min_tdcf_2021(bonafide: np.ndarray, spoof: np.ndarray, asv: dict = DEFAULT_ASV,
                  cost: dict = COST_MODEL_2021) -> float:
    """Minimum normalised revised t-DCF (ASVspoof 2021): (C0 + C1 Pmiss + C2 Pfa) / (C0 + min(C1, C2))."""
    miss, false_alarm, _ = det_curve(bonafide, spoof)
    c0 = cost["Ptar"] * cost["Cmiss"] * asv["Pmiss_asv"] + cost["Pnon"] * cost["Cfa"] * asv["Pfa_asv"]
    c1 = cost["Ptar"] * cost["Cmiss"] - c0
    c2 = cost["Pspoof"] * cost["Cfa_spoof"] * (1 - asv["Pmiss_spoof_asv"])
    if c0 < 0 or c1 < 0 or c2 < 0:
        raise ScoreError("the ASV operating point gives a negative t-DCF weight; check the ASV error rates")
    return float(np.min((c0 + c1 * miss + c2 * false_alarm) / (c0 + min(c1, c2))))


def asv_operating_point(path) -> dict:
    """ASV error rates at the ASV EER threshold from an official ASV score file (`SOURCE KEY SCORE`).

    KEY is target, nontarget or spoof. As the official tool: a trial is accepted when its score is
    at or above the threshold.
    """
    groups = {"target": [], "nontarget": [], "spoof": []}
    with open(path) as f:
        for number, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 3 or fields[1] not in groups:
                raise ScoreError(f"{path}:{number}: expected 'SOURCE KEY SCORE' with KEY target, nontarget or "
                                 f"spoof, got {line.strip()!r}")
            try:
                groups[fields[1]].append(float(fields[2]))
            except ValueError:
                raise ScoreError(f"{path}:{number}: score {fields[2]!r} is not a number") from None
    target, nontarget, spoof = (np.array(groups[k]) for k in ("target", "nontarget", "spoof"))
    if not len(target) or not len(nontarget) or not len(spoof):
        raise ScoreError(f"{path}: needs target, nontarget and spoof trials")
    _, threshold = compute_eer(target, nontarget)
    return {"Pfa_asv": float(np.mean(nontarget >= threshold)), "Pmiss_asv": float(np.mean(target < threshold)),
            "Pmiss_spoof_asv": float(np.mean(spoof < threshold))}


# ASVspoof 5 (Track 1) detection cost: prior of a spoof 0.05, cost 1 for rejecting bona fide
# (a miss) and 10 for accepting a spoof (a false alarm), normalised by the cost of the better
# of the two trivial systems (accept all, reject all), as the challenge's evaluation package does.
DCF_COSTS = {"Pspoof": 0.05, "Cmiss": 1.0, "Cfa": 10.0}


def _dcf_weights(costs: dict) -> tuple[float, float, float]:
    """(weight of the miss rate, weight of the false-alarm rate, normaliser)."""
    w_miss, w_fa = costs["Cmiss"] * (1 - costs["Pspoof"]), costs["Cfa"] * costs["Pspoof"]
    return w_miss, w_fa, min(w_miss, w_fa)


def min_dcf(bonafide: np.ndarray, spoof: np.ndarray, costs: dict = DCF_COSTS) -> float:
    """Minimum normalised DCF over the CM thresholds of det_curve (any score scale)."""
    miss, false_alarm, _ = det_curve(bonafide, spoof)
    w_miss, w_fa, norm = _dcf_weights(costs)
    return float(np.min(w_miss * miss + w_fa * false_alarm) / norm)


def bayes_threshold(costs: dict = DCF_COSTS) -> float:
    """The log-likelihood-ratio threshold of the minimum-cost decision: accept as bona fide at or
    above log(Cfa Pspoof / (Cmiss (1 - Pspoof))) (-0.642 for the ASVspoof 5 costs)."""
    return float(np.log(costs["Cfa"] * costs["Pspoof"] / (costs["Cmiss"] * (1 - costs["Pspoof"]))))


def act_dcf(bonafide_llr: np.ndarray, spoof_llr: np.ndarray, costs: dict = DCF_COSTS) -> float:
    """Normalised DCF of the decisions taken at the Bayes threshold: needs calibrated scores
    (natural-log LLRs). As the challenge's package: bona fide below the threshold is a miss,
    a spoof at or above it a false alarm."""
    bonafide_llr, spoof_llr = np.asarray(bonafide_llr, float), np.asarray(spoof_llr, float)
    _check_llrs(bonafide_llr, spoof_llr)  # constant LLRs are fine: actDCF judges decisions
    threshold = bayes_threshold(costs)
    w_miss, w_fa, norm = _dcf_weights(costs)
    return float((w_miss * np.mean(bonafide_llr < threshold) + w_fa * np.mean(spoof_llr >= threshold)) / norm)


def _check_llrs(bonafide_llr: np.ndarray, spoof_llr: np.ndarray) -> None:
    if len(bonafide_llr) == 0 or len(spoof_llr) == 0:
        raise ScoreError(f"need scores of both classes (got {len(bonafide_llr)} bona fide, {len(spoof_llr)} spoof)")
    if np.isnan(bonafide_llr).any() or np.isnan(spoof_llr).any():
        raise ScoreError("scores contain NaN values")


def cllr(bonafide_llr: np.ndarray, spoof_llr: np.ndarray) -> float:
    """Log-likelihood-ratio cost in bits: 0 = perfect, 1 = an uninformative LLR of 0 for everything.
    log(1 + e^x) is taken as logaddexp(0, x), so an LLR of +-1e4 neither overflows nor rounds to 0."""
    bonafide_llr, spoof_llr = np.asarray(bonafide_llr, float), np.asarray(spoof_llr, float)
    _check_llrs(bonafide_llr, spoof_llr)
    return float((np.mean(np.logaddexp(0.0, -bonafide_llr)) + np.mean(np.logaddexp(0.0, spoof_llr)))
                 / (2 * np.log(2)))


def pav_llr(bonafide: np.ndarray, spoof: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The LLRs of the best monotone calibration of these very scores (pool-adjacent-violators,
    tied scores pooled): what no calibration of the scores can beat. +-inf where a pool is pure."""
    from sklearn.isotonic import IsotonicRegression

    bonafide, spoof = np.asarray(bonafide, float), np.asarray(spoof, float)
    scores = np.concatenate([bonafide, spoof])
    labels = np.concatenate([np.ones(len(bonafide)), np.zeros(len(spoof))])
    posterior = IsotonicRegression(increasing=True).fit_transform(scores, labels)
    with np.errstate(divide="ignore"):
        llr = np.log(posterior) - np.log1p(-posterior) - np.log(len(bonafide) / len(spoof))
    return llr[:len(bonafide)], llr[len(bonafide):]


def min_cllr(bonafide: np.ndarray, spoof: np.ndarray) -> float:
    """Cllr after the optimal monotone calibration (PAV): the discrimination part of Cllr."""
    check_scores(np.asarray(bonafide, float), np.asarray(spoof, float))
    return cllr(*pav_llr(bonafide, spoof))
