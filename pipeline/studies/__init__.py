"""Held-out studies: train the recipe without part of the data and score what was left out
(leave one attack out)."""
