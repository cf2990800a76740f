"""Stage `f0_report`: F0 of bona fide vs each attack, and the share of voiced frames in the subband.

    python -m pipeline.f0_report [--params params.yaml]

The paper keeps only the STFT bins below ~400 Hz because that band holds the F0 of speech;
this stage measures that claim on our own data. Outputs: metrics/f0_report.json,
plots/f0_report/f0_histogram.csv (DVC plot) and plots/f0_report/f0_histogram.png.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from pipeline.settings import SettingsError, load_settings
from pipeline.shards import ShardError, open_partition


def collect_f0(readers) -> dict[str, np.ndarray]:
    """Voiced F0 values grouped by 'bonafide' or attack id (original utterances, not augmented copies)."""
    groups = defaultdict(list)
    for reader in readers:
        for i in reader.originals:
            _, f0 = reader.read(i)
            group = "bonafide" if reader.label[i] == 1 else reader.attack[i]
            groups[group].append(f0[f0 > 0])
        reader.close()
    return {g: np.concatenate(v) if v else np.zeros(0, np.float32) for g, v in sorted(groups.items())}


def summarise(groups: dict[str, np.ndarray], band_hz: float) -> dict:
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


def write_outputs(groups, summary, settings, metrics_path: Path, plot_dir: Path) -> None:
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--features", default="data/features")
    parser.add_argument("--metrics", default="metrics/f0_report.json")
    parser.add_argument("--plots", default="plots/f0_report")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.params)
        readers = open_partition(Path(args.features) / settings.f0_report.partition, settings.features)
    except (ShardError, SettingsError) as err:
        print(f"f0_report: {err}", file=sys.stderr)
        return 1
    fs = settings.features
    band_hz = (fs.n_subband_bins - 1) * fs.sample_rate / fs.n_fft
    groups = collect_f0(readers)
    summary = summarise(groups, band_hz)
    write_outputs(groups, summary, settings.f0_report, Path(args.metrics), Path(args.plots))
    print(f"f0_report: {summary['bonafide']['share_in_band']:.1%} of bona fide voiced frames lie at or "
          f"below {band_hz:.0f} Hz")
    return 0


if __name__ == "__main__":
    sys.exit(main())
