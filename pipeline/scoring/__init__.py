"""Scoring: device and precision, the model file, the one Scorer every stage scores through,
calibration and the metrics (EER, t-DCF, DCF, Cllr)."""
