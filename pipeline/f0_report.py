"""Stage `f0_report`: F0 of bona fide vs each attack, and the share of voiced frames in the subband.

    python -m pipeline.f0_report [--params params.yaml]

The paper keeps only the STFT bins below ~400 Hz because that band holds the F0 of speech;
this stage measures that claim on our own data. Outputs: metrics/f0_report.json,
plots/f0_report/f0_histogram.csv (DVC plot) and plots/f0_report/f0_histogram.png.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.cli import run_stage
from pipeline.data.shards import open_partition
from pipeline.reports.plots import collect_f0, summarise_f0, write_f0_outputs
from pipeline.settings import load_settings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--features", default="data/features")
    parser.add_argument("--metrics", default="metrics/f0_report.json")
    parser.add_argument("--plots", default="plots/f0_report")
    args = parser.parse_args(argv)

    def body() -> None:
        settings = load_settings(args.params)
        readers = open_partition(Path(args.features) / settings.f0_report.partition, settings.features)
        fs = settings.features
        band_hz = (fs.n_subband_bins - 1) * fs.sample_rate / fs.n_fft
        groups = collect_f0(readers)
        summary = summarise_f0(groups, band_hz)
        write_f0_outputs(groups, summary, settings.f0_report, Path(args.metrics), Path(args.plots))
        print(f"f0_report: {summary['bonafide']['share_in_band']:.1%} of bona fide voiced frames lie at or "
              f"below {band_hz:.0f} Hz")
    return run_stage("f0_report", body)

if __name__ == "__main__":
    sys.exit(main())
