"""Exceptions the runtime raises to callers."""

from __future__ import annotations

import traceback

__all__ = ["BindError", "DocketError", "StepFailed"]


class DocketError(Exception):
    """Base class of every error Docket raises."""


class BindError(DocketError, TypeError):
    """An implementation does not fit the graph it is bound to."""


class StepFailed(DocketError):
    """A step raised; the original exception is chained as ``__cause__``.

    ``step`` is the step's name, ``attempts`` how many attempts were made,
    ``traceback_text`` the original traceback, formatted when it was caught.
    """

    def __init__(self, step: str, cause: BaseException, attempts: int = 1) -> None:
        self.step = step
        self.cause = cause
        self.attempts = attempts
        self.traceback_text = "".join(traceback.format_exception(cause))
        kind = type(cause).__qualname__
        super().__init__(f"step {step!r} failed after {attempts} attempt(s): {kind}: {cause}")
