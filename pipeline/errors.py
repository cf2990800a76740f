"""The project's errors: each names the file, setting or utterance at fault and what to do.

Every error a user can cause (bad settings, a damaged or foreign file, a malformed protocol, a
diverged run) derives from PipelineError, so a stage reports it as one line and an exit status
(pipeline.cli) and never as a traceback; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class PipelineError(Exception):
    """A problem with the user's input or settings, said in one line."""
