import numpy as np
import pytest

from pipeline.reports.evaluation import partition_metrics
from pipeline.scoring.metrics import (COST_MODEL, DEFAULT_ASV, ScoreError, act_dcf, asv_operating_point,
                                      bayes_threshold, cllr, compute_eer, min_cllr, min_dcf, min_tdcf, min_tdcf_2021)


def reference_rates(bonafide, spoof):
    """Plain loop: order by score, bona fide first on ties; reject the first k trials."""
    trials = sorted([(s, 0) for s in bonafide] + [(s, 1) for s in spoof])
    points = []
    for k in range(len(trials) + 1):
        rejected = trials[:k]
        miss = sum(1 for _, spoof_flag in rejected if spoof_flag == 0) / len(bonafide)
        false_alarm = sum(1 for _, spoof_flag in trials[k:] if spoof_flag == 1) / len(spoof)
        points.append((miss, false_alarm))
    return points


def reference_eer(bonafide, spoof):
    points = reference_rates(bonafide, spoof)
    best = min(range(len(points)), key=lambda i: (abs(points[i][0] - points[i][1]), i))
    return sum(points[best]) / 2


def reference_min_tdcf(bonafide, spoof):
    a, c = DEFAULT_ASV, COST_MODEL
    c1 = c["Ptar"] * (1 - a["Pmiss_asv"]) - c["Pnon"] * 10 * a["Pfa_asv"]
    c2 = 10 * c["Pspoof"] * (1 - a["Pmiss_spoof_asv"])
    return min((c1 * m + c2 * f) / min(c1, c2) for m, f in reference_rates(bonafide, spoof))


def test_hand_computed_eer():
    assert compute_eer([0.9, 0.8, 0.7], [0.1, 0.2, 0.75])[0] == pytest.approx(1 / 3)
    # tied scores: bona fide sorts before spoof, unlike a ROC that merges ties
    assert compute_eer([0.5, 1.0], [0.0, 0.5])[0] == pytest.approx(0.5)
    assert compute_eer([2.0, 3.0], [0.0, 1.0])[0] == 0.0


def test_perfect_separation_has_zero_min_tdcf_and_rejecting_all_costs_c1_over_min():
    assert min_tdcf(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 0.0
    assert min_tdcf(np.array([0.0, 0.1]), np.array([1.0, 2.0])) == pytest.approx(
        reference_min_tdcf([0.0, 0.1], [1.0, 2.0]))


@pytest.mark.parametrize("seed", range(5))
def test_random_scores_match_an_independent_computation(seed):
    rng = np.random.default_rng(seed)
    bonafide = np.round(rng.normal(1.0, 1.0, 40), 1)   # rounding makes ties
    spoof = np.round(rng.normal(-0.5, 1.0, 70), 1)
    assert compute_eer(bonafide, spoof)[0] == pytest.approx(reference_eer(bonafide.tolist(), spoof.tolist()), abs=1e-12)
    assert min_tdcf(bonafide, spoof) == pytest.approx(reference_min_tdcf(bonafide.tolist(), spoof.tolist()), abs=1e-9)


@pytest.mark.parametrize("bonafide, spoof, message", [
    ([], [0.1], "both classes"),
    ([0.2, np.nan], [0.1], "NaN"),
    ([0.2, np.inf], [0.1], "NaN or infinite"),
])
def test_bad_scores_are_refused(bonafide, spoof, message):
    with pytest.raises(ScoreError, match=message):
        compute_eer(np.array(bonafide), np.array(spoof))


def test_per_attack_eer_pairs_each_attack_with_all_bona_fide():
    scores = np.array([1.0, 0.9, 0.0, 0.95, -1.0])
    labels = np.array([1, 1, 0, 0, 0])
    metrics = partition_metrics(scores, labels, ["-", "-", "A01", "A02", "A02"])
    assert metrics["eer_per_attack"]["A01"] == 0.0
    assert metrics["eer_per_attack"]["A02"] == pytest.approx(compute_eer([1.0, 0.9], [0.95, -1.0])[0])
    assert (metrics["bonafide"], metrics["spoof"]) == (2, 3)


def reference_min_tdcf_2021(bonafide, spoof, asv=DEFAULT_ASV):
    c0 = 0.9405 * asv["Pmiss_asv"] + 0.0095 * 10 * asv["Pfa_asv"]
    c1 = 0.9405 - c0
    c2 = 0.05 * 10 * (1 - asv["Pmiss_spoof_asv"])
    return min((c0 + c1 * m + c2 * f) / (c0 + min(c1, c2)) for m, f in reference_rates(bonafide, spoof))


@pytest.mark.parametrize("seed", range(3))
def test_revised_2021_tdcf_matches_an_independent_computation(seed):
    rng = np.random.default_rng(seed)
    bonafide, spoof = rng.normal(1.0, 1.0, 30), rng.normal(0.0, 1.0, 50)
    assert min_tdcf_2021(bonafide, spoof) == pytest.approx(reference_min_tdcf_2021(bonafide, spoof), abs=1e-9)
    # an error-free CM leaves only the ASV's own cost
    perfect = min_tdcf_2021(bonafide + 100, spoof)
    c0 = 0.9405 * DEFAULT_ASV["Pmiss_asv"] + 0.0095 * 10 * DEFAULT_ASV["Pfa_asv"]
    assert perfect == pytest.approx(c0 / (c0 + min(0.9405 - c0, 0.5 * (1 - DEFAULT_ASV["Pmiss_spoof_asv"]))))


def test_asv_operating_point_from_an_official_score_file(tmp_path):
    path = tmp_path / "asv.txt"
    lines = [f"LA_0001 target {s}" for s in (3.0, 4.0, 5.0, 0.5)]
    lines += [f"LA_0002 nontarget {s}" for s in (-3.0, -2.0, 1.0, -1.0)]
    lines += [f"A07 spoof {s}" for s in (2.0, -5.0)]
    path.write_text("\n".join(lines) + "\n")
    point = asv_operating_point(path)
    # The official EER threshold is the score of the last rejected trial at the EER point: 0.5 here.
    # Accepting scores >= 0.5: no target missed, nontarget 1.0 accepted, spoof -5 rejected.
    assert point == {"Pfa_asv": 0.25, "Pmiss_asv": 0.0, "Pmiss_spoof_asv": 0.5}
    path.write_text("LA_0001 target\n")
    with pytest.raises(ScoreError, match="asv.txt:1: expected 'SOURCE KEY SCORE'"):
        asv_operating_point(path)


def test_decisions_instead_of_scores_are_refused():
    with pytest.raises(ScoreError, match="fewer than 3 distinct scores"):
        compute_eer(np.array([1.0, 1.0]), np.array([0.0, 0.0]))


# ---------------------------------------------------------------- ASVspoof 5 metrics

def reference_min_dcf(bonafide, spoof):
    """Pspoof 0.05, Cmiss 1, Cfa 10, normalised by min(0.95 * 1, 0.05 * 10) = 0.5."""
    return min(0.95 * miss + 0.5 * fa for miss, fa in reference_rates(bonafide, spoof)) / 0.5


def reference_pav(scores, labels):
    """Pool adjacent violators by hand: tied scores form one block first, then neighbouring
    blocks whose bona fide share decreases are merged until the shares increase."""
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    blocks = []  # [bona fide count, size, members]
    for i in order:
        if blocks and scores[blocks[-1][2][-1]] == scores[i]:
            blocks[-1][0] += labels[i]
            blocks[-1][1] += 1
            blocks[-1][2].append(i)
        else:
            blocks.append([labels[i], 1, [i]])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]:
            last = blocks.pop()
            blocks[-1] = [blocks[-1][0] + last[0], blocks[-1][1] + last[1], blocks[-1][2] + last[2]]
    posterior = [0.0] * len(scores)
    for count, size, members in blocks:
        for i in members:
            posterior[i] = count / size
    return posterior


def reference_min_cllr(bonafide, spoof):
    import math
    scores, labels = list(bonafide) + list(spoof), [1] * len(bonafide) + [0] * len(spoof)
    prior_odds = len(bonafide) / len(spoof)
    total = {1: 0.0, 0: 0.0}
    for p, label in zip(reference_pav(scores, labels), labels):
        # cost of a trial: -log2 of the posterior of its own class at the 0.5 prior
        odds = (p / (1 - p) / prior_odds) if 0 < p < 1 else (math.inf if p == 1 else 0.0)
        own = odds / (1 + odds) if label == 1 else 1 / (1 + odds)
        if odds == math.inf:
            own = 1.0 if label == 1 else 0.0
        total[label] += -math.log2(own)
    return 0.5 * (total[1] / len(bonafide) + total[0] / len(spoof))


@pytest.mark.parametrize("seed", range(5))
def test_asvspoof5_min_dcf_and_min_cllr_match_independent_computations(seed):
    rng = np.random.default_rng(seed)
    bonafide = np.round(rng.normal(1.0, 1.0, 40), 1)   # rounding makes ties
    spoof = np.round(rng.normal(-0.5, 1.0, 70), 1)
    assert min_dcf(bonafide, spoof) == pytest.approx(reference_min_dcf(bonafide.tolist(), spoof.tolist()), abs=1e-12)
    assert min_cllr(bonafide, spoof) == pytest.approx(reference_min_cllr(bonafide.tolist(), spoof.tolist()), abs=1e-9)
    # no calibration beats the PAV one, and PAV is never worse than saying 'no idea' (Cllr 1)
    assert min_cllr(bonafide, spoof) <= cllr(bonafide, spoof) and min_cllr(bonafide, spoof) <= 1.0


def test_asvspoof5_metrics_hand_computed():
    assert bayes_threshold() == pytest.approx(np.log(0.5 / 0.95))            # -0.642
    # bona fide -1 is a miss, spoofs -0.5 and 0.5 are false alarms (at or above -0.642)
    assert act_dcf([0.0, 1.0, -1.0], [-2.0, -0.5, 0.5]) == pytest.approx((0.95 / 3 + 0.5 * 2 / 3) / 0.5)
    assert cllr([0.0], [0.0]) == pytest.approx(1.0)                            # LLR 0: no information
    assert cllr([np.log(3)], [-np.log(3)]) == pytest.approx(np.log2(4 / 3))
    # perfect separation: minDCF 0, minCllr 0; everything on the wrong side: minDCF 1 (reject all)
    assert min_dcf([1.0, 2.0], [0.0, 0.5]) == 0.0 and min_cllr([1.0, 2.0], [0.0, 0.5]) == 0.0
    assert min_dcf([0.0, 0.1], [1.0, 2.0]) == pytest.approx(1.0)


def test_cllr_does_not_overflow_on_extreme_llrs():
    assert cllr([1e4, 800.0], [-1e4, -800.0]) == 0.0
    wrong = cllr([-1e4], [1e4])
    assert np.isfinite(wrong) and wrong == pytest.approx(1e4 / np.log(2))
    assert cllr([40.0], [-40.0]) > 0  # tiny, not rounded to zero by 1 + e^-40 == 1
