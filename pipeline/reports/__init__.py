"""What is written about scores: partition metrics with per-attack and per-condition breakdowns,
score files, DET and histogram plots, Markdown reports, the F0 report and the model card."""
