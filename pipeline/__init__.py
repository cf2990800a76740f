"""The pipeline: its stages and commands (one thin module each: corpus, manifest, extract,
f0_report, evaluate, loao, model_card, detect, export, preset), the settings they share, and the
libraries they call, grouped by purpose (mini/, data/, scoring/, training)."""
