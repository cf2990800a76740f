"""The model card: what the trained model is, what it was trained and measured on, what it was
not tested on; rendered from the run's own records."""
from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from features import fusion_streams, n_fusion_statistics
from features.copy_synthesis import METHODS
from features.excitation import N_UTTERANCE_STATISTICS
from features.harmonic_phase import N_PHASE_STATISTICS

HEADS = {"asoftmax": "an A-Softmax", "softmax": "a softmax", "ocsoftmax": "a one-class (OC-Softmax)"}
SCORES = {"asoftmax": "cos(bona fide) - cos(spoof)", "softmax": "logit(bona fide) - logit(spoof)",
          "ocsoftmax": "2 x cosine to the bona fide direction"}


def partition_summary(manifest: Path) -> dict:
    """Utterances, bona fide, speakers and attacks of one partition's manifest."""
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return {"utterances": len(rows), "bonafide": sum(r["label"] == "1" for r in rows),
            "speakers": sorted(Counter(r["speaker"] for r in rows)),
            "attacks": sorted({r["attack"] for r in rows} - {"-"})}


def metric_row(name: str, m: dict) -> str:
    optional = lambda key, fmt: "n/a" if m.get(key) is None else format(m[key], fmt)  # noqa: E731
    return (f"| {name} | {m['eer']:.2%} | {m['min_tdcf']:.4f} | {m['min_dcf']:.4f} | "
            f"{optional('act_dcf', '.4f')} | {optional('cllr', '.3f')} | {m['min_cllr']:.3f} |")


def render(settings, parts: dict, train: dict, metrics: dict, loao: dict | None = None, loso: dict | None = None,
           channels: dict | None = None) -> str:
    ms, ts = settings.model, settings.train
    seen = set(parts["train"]["attacks"])
    fs = settings.features
    view2 = (f", fused with a second view through its own branch ({fs.view2_bands} mel-spaced bands, "
             f"{fs.view2_min_hz:g}-{fs.view2_max_hz:g} Hz)" if fs.view2_bands else "")
    if fs.excitation:
        view2 += ", and with per-frame excitation statistics (how impulsive the LPC residual is) through a branch of their own"
    read = [f"{N_UTTERANCE_STATISTICS} of the excitation"]
    read += ["the median harmonics-to-noise ratio"] if fs.harmonicity else []
    read += [f"{N_PHASE_STATISTICS} of the harmonics' phases"] if fs.harmonic_phase else []
    count = n_fusion_statistics(fusion_streams(fs))
    statistics = (f"{count} utterance statistics ({', '.join(read[:-1])} and {read[-1]})" if len(read) > 1
                  else f"{count} utterance statistics of the excitation")
    cap = ", its log-odds capped at 0 so that it can only lower a score" if ms.excitation_fusion_one_sided else ""
    fitted_on = ("the training utterances and their augmented copies"
                 if ms.excitation_fusion_copies and settings.augment.copies else "the training utterances")
    fusion = (f", fused with a quadratic logistic model of {statistics}, fitted on {fitted_on}{cap}, "
              "with fusion weights fitted on dev" if ms.excitation_fusion else "")
    lines = [
        "# Model card", "",
        "Written by the `model_card` stage from this run's records; `dvc repro` rewrites it.", "",
        "## What it is", "",
        f"A fake-speech (spoofing) countermeasure: {ms.arch} ({train['parameters']:,} parameters, "
        f"SR gates `{ms.sr_placement}`) with {HEADS[ms.head]} head, "
        f"on the F0 subband log spectrogram (0-{settings.features.max_hz:g} Hz, "
        f"{settings.features.n_subband_bins} bins){view2}. Input: any audio, resampled to "
        f"{settings.features.sample_rate} Hz. Output per file: a score (higher = more bona fide; "
        f"the head's {SCORES[ms.head]}{fusion}), an LLR from an affine calibration fitted on dev, "
        f"and a decision (`python -m pipeline.detect`).", "",
        "## Trained on", "",
        f"`{settings.data.root}`: {ts.epochs} epochs ({train['steps']} steps) of {ts.frames}-frame crops, "
        f"batch {ts.batch_size}, peak learning rate {ts.lr:g}, seed {ts.seed}, precision "
        f"{train.get('precision', 'fp32')}; the final model is "
        + (f"the weight average of the last {train['averaged_epochs']} epochs."
           if train.get("averaged_epochs") else f"epoch {train['best_epoch']}, the best on dev."), "",
        "| partition | utterances | bona fide | speakers | attacks |", "| --- | --- | --- | --- | --- |"]
    for name, p in parts.items():
        lines.append(f"| {name} | {p['utterances']} | {p['bonafide']} | {', '.join(p['speakers'])} | "
                     f"{', '.join(p['attacks'])} |")
    methods = settings.copy_synthesis.methods
    if methods:
        lines += ["", "Training also saw spoofs made from its own bona fide utterances, one per utterance and "
                  "method (copy synthesis, `features.copy_synthesis`: "
                  f"{', '.join(f'{m} as {METHODS[m][0]}' for m in methods)}); dev and eval have none."]
    lines += ["", "## Measured", "",
              "EER and min t-DCF (ASVspoof 2019 cost model) as the official tools compute them; minDCF, "
              "actDCF and Cllr with the ASVspoof 5 costs (P(spoof) 0.05, Cmiss 1, Cfa 10). **In-sample "
              "figures**: every dev figure is in-sample for a number fitted on dev (the epoch kept, the "
              "calibration, the decision threshold" + (", the fusion weights" if ms.excitation_fusion else "")
              + "), so dev's EER, actDCF and Cllr are optimistic; eval's fitted nothing.", "",
              "| partition | EER | min t-DCF | minDCF | actDCF | Cllr | minCllr |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, m in metrics.items():
        lines.append(metric_row(name, m))
    lines += ["", "EER per attack: " + "; ".join(
        f"{name} " + ", ".join(f"{a} {e:.1%}" for a, e in m["eer_per_attack"].items()) for name, m in metrics.items())]
    for name, m in metrics.items():
        speakers = {k: v["eer"] for k, v in m.get("eer_per_condition", {}).get("speaker", {}).items()
                    if v["eer"] is not None}
        if len(speakers) > 1:
            worst = max(speakers, key=speakers.get)
            lines += ["", f"{name}: EER per speaker (its spoofs against its bona fide) from "
                      f"{min(speakers.values()):.1%} to {speakers[worst]:.1%} ({worst}), over {len(speakers)} speakers."]
    if loao and loao.get("enabled"):
        lines += ["", f"Leave one attack out (trained without it, scored on the held-out speakers): mean EER "
                  f"{loao['mean_eer']:.1%}; " + ", ".join(f"{a} {e:.1%}" for a, e in loao["eer_per_attack"].items())]
    if loso and loso.get("enabled"):
        lines += ["", "Leave one recording source out (trained without the source's speakers, its bona fide scored "
                  f"against the eval spoofs): mean EER {loso['mean_eer']:.1%}, mean "
                  f"{loso['mean_rejected']:.1%} of a source's bona fide rejected at the model's threshold; "
                  + ", ".join(f"{s} {e:.1%} ({loso['rejected_per_source'][s]:.0%} rejected)"
                              for s, e in loso["eer_per_source"].items())]
    if channels and channels.get("enabled"):
        for name, eers in channels["eer"].items():
            lines += ["", f"{name} under channel conditions (each utterance through it, then scored): clean "
                      f"{eers['clean']:.1%}; " + ", ".join(f"{c} {e:.1%}" for c, e in eers.items() if c != "clean")]
    lines += ["", "## Not tested on", ""]
    unseen = sorted(set(parts.get("eval", {}).get("attacks", [])) - seen)
    lines += [
        f"- Speakers other than the {len(parts['dev']['speakers']) + len(parts['eval']['speakers'])} "
        f"held-out ones above (dev {len(parts['dev']['speakers'])}, eval {len(parts['eval']['speakers'])}).",
        "- Generators other than the attacks listed" + (f" (eval's {', '.join(unseen)} are the only ones "
                                                         f"unseen in training)" if unseen else "")
        + "; in particular neural vocoders and TTS other than the mini corpus's two neural engines (Piper, "
        "Kokoro).",
        "- Recording sources other than the corpus's" + ("" if loso and loso.get("enabled") else
                                                          " (the `loso` stage, off in this run, measures them)")
        + ": an outside check found an earlier model near chance on real speech recorded elsewhere.",
        "- Channels other than the corpus's own" + (" and the conditions above" if channels and channels.get("enabled")
                                                    else " (codecs, transmission, noise, reverberation)")
        + ", and recordings longer than a few seconds.",
        "- The real ASVspoof corpora, unless `data.root` above points at one.", ""]
    return "\n".join(lines)
