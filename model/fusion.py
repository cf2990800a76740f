"""Score fusion of the network with a small model of the utterance's excitation statistics.

The network's excitation branch learns the residual cues of the vocoders it trains on, one by
one, and meets a held-out vocoder near chance. A quadratic logistic regression on utterance
statistics of the same per-frame numbers (features.excitation.utterance_statistics, and the
harmonicity and harmonic phase streams' summaries where the recipe has them) has too few
parameters to learn a vocoder by heart and carries the cue to unseen ones, but alone it is weak
on most attacks. Fused, the network's score decides and the statistics' log-odds shift it
(figures: docs/experiments.md).

Two fits, both in train.py: the statistics model on the training utterances (the network's own
training set, without train.exclude_attacks), then the fusion weights, a two-input logistic
regression, on dev with the network's dev scores. Both are stored in the model file as plain
numbers (a dict of lists), so scoring needs neither pickles nor the training data.

One-sided (model.excitation_fusion_one_sided): the statistics' log-odds are capped at 0, so they
can lower a score (the excitation looks like a vocoder's) but never raise one. A held-out
generator whose excitation the statistics take for a voice (a neural TTS) then keeps the
network's score instead of being pushed towards bona fide. The cap is part of the statistics
model's numbers ("one_sided"), so every scorer applies it.

A statistic may be NaN: no evidence (the harmonic phase of an utterance without voiced frames).
The model replaces it by that statistic's median over the training bona fide ("fill", stored with
it), so a missing statistic neither accuses nor clears an utterance.
"""
from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import PolynomialFeatures

__all__ = ["combine", "fit_fusion", "fit_statistics_model", "fused_scores", "statistics_logit"]

DEGREE = 2  # every statistic, and every product of two (a model stores "degree" only when it differs)


def _terms(model: dict, statistics: np.ndarray) -> np.ndarray:
    """Standardised statistics -> their polynomial terms [n, terms] (quadratic unless the model
    says otherwise; the constant term dropped)."""
    x = _filled(model, statistics)
    x = (x - model["mean"]) / model["scale"]
    return PolynomialFeatures(int(model.get("degree", DEGREE)), include_bias=False).fit_transform(x)


def _expand(model: dict, statistics: np.ndarray) -> np.ndarray:
    """Standardised statistics -> standardised quadratic terms [n, terms]."""
    return (_terms(model, statistics) - model["term_mean"]) / model["term_scale"]


def _filled(model: dict, statistics: np.ndarray) -> np.ndarray:
    """The statistics with each NaN (no evidence) replaced by the model's fill value."""
    x = np.asarray(statistics, dtype=np.float64)
    if np.isinf(x).any():
        raise ValueError("the utterance statistics hold infinite values")
    missing = np.isnan(x)
    if not missing.any():
        return x
    if "fill" not in model:
        raise ValueError("the utterance statistics hold NaN values, and this statistics model (made before "
                         "missing values were allowed) has no fill for them")
    return np.where(missing, np.broadcast_to(model["fill"], x.shape), x)


def _bonafide_medians(statistics: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each statistic's median over the bona fide rows that have it (over all rows, then 0, where none do)."""
    fill = np.zeros(statistics.shape[1])
    for column in range(statistics.shape[1]):
        for rows in (statistics[labels == 1, column], statistics[:, column]):
            rows = rows[np.isfinite(rows)]
            if len(rows):
                fill[column] = np.median(rows)
                break
    return fill


def _scale(values: np.ndarray) -> np.ndarray:
    scale = values.std(axis=0)
    return np.where(scale > 1e-12, scale, 1.0)


def fit_statistics_model(statistics: np.ndarray, labels: np.ndarray, c: float = 1.0, one_sided: bool = False,
                         degree: int = DEGREE, sample_weight: np.ndarray | None = None) -> dict:
    """Quadratic logistic regression, bona fide (label 1) against spoof, classes weighted equally;
    c: the inverse L2 strength; one_sided: its log-odds capped at 0 (statistics_logit). NaN
    statistics (no evidence) are filled with the training bona fide's medians, stored as "fill".
    degree (1 = linear) and sample_weight (per row, on top of the class weights) are for studies
    (bench/statistics_groups.py); the recipe uses neither. Returns its numbers as lists (what the
    model file stores)."""
    statistics = np.asarray(statistics, dtype=np.float64)
    labels = np.asarray(labels)
    if len(np.unique(labels)) != 2:
        raise ValueError("the statistics model needs bona fide and spoofed utterances")
    model = {"fill": _bonafide_medians(statistics, labels)}
    if degree != DEGREE:
        model["degree"] = int(degree)
    statistics = _filled(model, statistics)
    model.update(mean=statistics.mean(axis=0), scale=_scale(statistics))
    terms = _terms(model, statistics)
    model.update(term_mean=terms.mean(axis=0), term_scale=_scale(terms))
    regression = LogisticRegression(C=c, max_iter=5000, class_weight="balanced")
    regression.fit((terms - model["term_mean"]) / model["term_scale"], labels, sample_weight=sample_weight)
    model.update(coef=regression.coef_[0], intercept=float(regression.intercept_[0]))
    if one_sided:  # absent otherwise, so the model files of two-sided fusions stay as they were
        model["one_sided"] = True
    return {key: value.tolist() if isinstance(value, np.ndarray) else value for key, value in model.items()}


def statistics_logit(model: dict, statistics: np.ndarray) -> np.ndarray:
    """The statistics model's log-odds of bona fide, one per row of statistics (at most 0 for a
    one-sided model)."""
    arrays = {key: np.asarray(value, dtype=np.float64) for key, value in model.items() if key != "one_sided"}
    logit = _expand(arrays, statistics) @ arrays["coef"] + arrays["intercept"]
    return np.minimum(logit, 0.0) if model.get("one_sided") else logit


def fit_fusion(network_scores: np.ndarray, statistics_logits: np.ndarray, labels: np.ndarray) -> dict:
    """Weights of the fused score w_network * score + w_statistics * logit + bias, by a logistic
    regression (classes weighted equally, next to no regularisation) on held-out (dev) scores."""
    x = np.column_stack([network_scores, statistics_logits]).astype(np.float64)
    regression = LogisticRegression(C=1e3, max_iter=1000, class_weight="balanced").fit(x, np.asarray(labels))
    w_network, w_statistics = regression.coef_[0]
    return {"w_network": float(w_network), "w_statistics": float(w_statistics),
            "bias": float(regression.intercept_[0])}


def combine(weights: dict, network_scores: np.ndarray, statistics_logits: np.ndarray) -> np.ndarray:
    """The fused score from the network's scores and the statistics model's log-odds."""
    return (weights["w_network"] * np.asarray(network_scores, dtype=np.float64)
            + weights["w_statistics"] * np.asarray(statistics_logits, dtype=np.float64) + weights["bias"])


def fused_scores(fusion: dict, network_scores: np.ndarray, statistics: np.ndarray) -> np.ndarray:
    """The fused score of each utterance from the network's score and its utterance statistics;
    fusion: {"statistics_model", "streams", "weights"} as the model file stores it (streams: what
    the statistics are read from); statistics: features.fusion_statistics of each utterance."""
    return combine(fusion["weights"], network_scores, statistics_logit(fusion["statistics_model"], statistics))
