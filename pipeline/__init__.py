"""The pipeline: its stages and commands (one thin module each: corpus, manifest, extract,
f0_report, evaluate, loao, model_card, detect, export, preset), what they share (settings, errors,
cli, overrides), and the libraries they call, grouped by purpose: mini/, data/, scoring/,
reports/, inference/, studies/, training."""
