"""The mini corpus: real speech from installable packages and the spoofs this project makes of it
(builder: plan, render, channel, layout; generators: the attack zoo)."""
