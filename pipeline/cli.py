"""What every stage and command shares: run its body and turn the project's errors into a line on
stderr and an exit status."""
from __future__ import annotations

import sys
from typing import Callable

from features import AudioError
from pipeline.errors import PipelineError

# What a user's input or settings can cause (the rest is a bug and keeps its traceback).
USER_ERRORS = (PipelineError, AudioError, OSError)


def run_stage(name: str, body: Callable[[], int | None], failure: int = 1, hint: str = "") -> int:
    """body()'s exit status (None = 0), or `failure` after printing `name: message` (and the
    hint, what is kept and what to do, on a line of its own) for an error of USER_ERRORS."""
    try:
        return body() or 0
    except USER_ERRORS as err:
        print(f"{name}: {err}", file=sys.stderr)
        if hint:
            print(hint, file=sys.stderr)
        return failure
