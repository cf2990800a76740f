"""Pictures and a readable report of a partition's scores: DET curve, score histograms, Markdown;
and the f0_report stage's F0 histograms.

Each plot is written twice: as CSV that `dvc plots show` renders, and as PNG for people
(the PNGs are the offline view; dvc's HTML loads its scripts from a CDN).
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.stats import norm

from pipeline.scoring.metrics import det_curve

DET_TICKS = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4]


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _deviate(p: np.ndarray) -> np.ndarray:
    """Normal deviate of a rate, clipped so 0 and 1 stay finite."""
    return norm.ppf(np.clip(p, 1e-4, 1 - 1e-4))


def det_plot(bonafide, spoof, groups: dict, title: str, csv_path: Path, png_path: Path) -> None:
    """DET curve on normal-deviate axes; groups maps a label (attack) to its spoof scores."""
    miss, false_alarm, _ = det_curve(bonafide, spoof)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with open(csv_path, "w") as f:
        f.write("false_alarm_deviate,miss_deviate,false_alarm,miss\n")
        for fa, m in zip(false_alarm, miss):
            f.write(f"{_deviate(fa):.5f},{_deviate(m):.5f},{fa:.6f},{m:.6f}\n")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.plot(_deviate(false_alarm), _deviate(miss), color="k", linewidth=2, label="pooled")
    for label, scores in groups.items():
        m, fa, _ = det_curve(bonafide, scores)
        ax.plot(_deviate(fa), _deviate(m), linewidth=1, label=label)
    ticks = _deviate(np.array(DET_TICKS))
    labels = [f"{t * 100:g}" for t in DET_TICKS]
    ax.set_xticks(ticks, labels)
    ax.set_yticks(ticks, labels)
    limit = (_deviate(np.array([0.0005]))[0], _deviate(np.array([0.5]))[0])
    ax.set_xlim(limit)
    ax.set_ylim(limit)
    ax.plot(limit, limit, color="0.7", linestyle=":", linewidth=1)
    ax.set_xlabel("false alarm rate (%)  [spoof accepted]")
    ax.set_ylabel("miss rate (%)  [bona fide rejected]")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


def histogram_plot(groups: dict, title: str, csv_path: Path, png_path: Path, bins: int = 40) -> None:
    """Score histograms (share of each group per bin) for bona fide and each attack."""
    everything = np.concatenate(list(groups.values()))
    edges = np.linspace(everything.min(), everything.max() + 1e-9, bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    shares = {g: np.histogram(v, bins=edges)[0] / len(v) for g, v in groups.items()}
    with open(csv_path, "w") as f:
        f.write("score,group,share\n")
        for g, values in shares.items():
            f.writelines(f"{c:.5f},{g},{v:.6f}\n" for c, v in zip(centres, values))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for g, values in shares.items():
        ax.step(centres, values, where="mid", linewidth=2.5 if g == "bonafide" else 1.2, label=g)
    ax.set_xlabel("score (higher = more bona fide)")
    ax.set_ylabel("share of the group's utterances")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


def write_markdown(path: Path, partition: str, metrics: dict, det_png: Path, hist_png: Path) -> None:
    rel = lambda p: Path(*([".."] * (len(path.parent.parts)))) / p  # noqa: E731
    asv = metrics["asv_operating_point"]
    lines = [f"# Evaluation: {partition}", "",
             f"{metrics['bonafide']} bona fide and {metrics['spoof']} spoofed utterances.", "",
             "| metric | value |", "| --- | --- |",
             f"| EER | {metrics['eer']:.2%} |",
             f"| min t-DCF (ASVspoof 2019) | {metrics['min_tdcf']:.4f} |",
             f"| min t-DCF (ASVspoof 2021, revised) | {metrics['min_tdcf_2021']:.4f} |",
             f"| minDCF (ASVspoof 5 costs) | {metrics['min_dcf']:.4f} |"]
    if metrics.get("act_dcf") is not None:
        lines += [f"| actDCF (calibrated on dev) | {metrics['act_dcf']:.4f} |",
                  f"| Cllr, bits (calibrated on dev) | {metrics['cllr']:.3f} |"]
    lines += [f"| minCllr, bits | {metrics['min_cllr']:.3f} |", "",
              f"ASV operating point: Pfa {asv['Pfa_asv']:.4f}, Pmiss {asv['Pmiss_asv']:.4f}, "
              f"Pmiss_spoof {asv['Pmiss_spoof_asv']:.4f} ({asv['source']}).", "",
              "## Per attack (each attack's spoofs against all bona fide)", "",
              "| attack | spoofs | EER |", "| --- | --- | --- |"]
    for attack, eer in metrics["eer_per_attack"].items():
        lines.append(f"| {attack} | {metrics['spoof_per_attack'][attack]} | {eer:.2%} |")
    for condition, values in metrics.get("eer_per_condition", {}).items():
        lines += ["", f"## Per {condition} (its spoofs against the bona fide of the same {condition}, "
                  f"or all bona fide where none has it)", "",
                  f"| {condition} | bona fide | spoofs | EER |", "| --- | --- | --- | --- |"]
        shown = sorted(values.items(), key=lambda item: -(item[1]["eer"] if item[1]["eer"] is not None else -1))
        if len(shown) > 40:  # thousands of speakers: the worst, and the rest in metrics/<name>.json
            lines[-4] += f" (the 20 worst of {len(shown)}; all in the metrics file)"
            shown = shown[:20]
        lines += [f"| {v} | {m['bonafide']} | {m['spoof']} | "
                  f"{'n/a (too few scores)' if m['eer'] is None else format(m['eer'], '.2%')} |" for v, m in shown]
    lines += ["", "## DET curve", "", f"![DET curve]({rel(det_png)})", "",
              "## Score distributions", "", f"![score histograms]({rel(hist_png)})", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


# ---------------------------------------------------------------- the f0_report stage

def collect_f0(readers) -> dict[str, np.ndarray]:
    """Voiced F0 values grouped by 'bonafide' or attack id (original utterances, not augmented copies)."""
    groups = defaultdict(list)
    for reader in readers:
        for i in reader.originals:
            f0 = reader.read(i, ["f0"]).f0
            group = "bonafide" if reader.label[i] == 1 else reader.attack[i]
            groups[group].append(f0[f0 > 0])
        reader.close()
    return {g: np.concatenate(v) if v else np.zeros(0, np.float32) for g, v in sorted(groups.items())}


def summarise_f0(groups: dict[str, np.ndarray], band_hz: float) -> dict:
    def stats(f0):
        if len(f0) == 0:
            return {"voiced_frames": 0, "share_in_band": None, "median_hz": None}
        return {"voiced_frames": int(len(f0)), "share_in_band": float(np.mean(f0 <= band_hz)),
                "median_hz": float(np.median(f0)),
                "p05_hz": float(np.percentile(f0, 5)), "p95_hz": float(np.percentile(f0, 95))}
    spoof = [v for g, v in groups.items() if g != "bonafide"]
    return {"band_hz": band_hz,
            "bonafide": stats(groups.get("bonafide", np.zeros(0))),
            "spoof": stats(np.concatenate(spoof) if spoof else np.zeros(0)),
            "per_attack": {g: stats(v) for g, v in groups.items() if g != "bonafide"}}


def write_f0_outputs(groups, summary, settings, metrics_path: Path, plot_dir: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    metrics_path.write_text(json.dumps(summary, indent=2) + "\n")
    plot_dir.mkdir(parents=True, exist_ok=True)
    edges = np.linspace(0, settings.histogram_max_hz, settings.histogram_bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2

    def density(values):
        counts, _ = np.histogram(values, bins=edges)
        return counts / max(1, len(values))

    spoof = np.concatenate([v for g, v in groups.items() if g != "bonafide"] or [np.zeros(0)])
    bona, spoofed = density(groups.get("bonafide", np.zeros(0))), density(spoof)
    with open(plot_dir / "f0_histogram.csv", "w") as f:
        f.write("f0_hz,bonafide,spoof\n")
        f.writelines(f"{c:.1f},{b:.6f},{s:.6f}\n" for c, b, s in zip(centres, bona, spoofed))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for group, values in groups.items():
        ax.plot(centres, density(values), label=group, linewidth=2.5 if group == "bonafide" else 1.2)
    ax.axvline(summary["band_hz"], color="k", linestyle="--", label=f"subband edge {summary['band_hz']:.0f} Hz")
    ax.set_xlabel("F0 (Hz)")
    ax.set_ylabel("share of voiced frames")
    ax.set_title("pyworld F0: bona fide vs each attack")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(plot_dir / "f0_histogram.png", dpi=100)
    plt.close(fig)
