"""Retry decisions: whether a failed attempt runs again, and after how long.

The order of the questions is fixed: an :class:`~docket_runtime.errors.Abort`
(or a child execution's :class:`~docket_runtime.errors.ExecutionAborted`) is
never retried; then the bound classifier (one that raises is logged and
ignored), then the policy's
``non_retryable_errors``; then whether attempts are left; then the backoff.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

from .errors import Abort, ExecutionAborted
from .plan import RetryPolicy

__all__ = ["Classifier", "backoff", "is_listed", "retry_delay"]

_log = logging.getLogger("docket.retry")

Classifier = Callable[[str, BaseException], bool | None]
"""``(step name, error) -> True`` (retry), ``False`` (never retry) or ``None`` (use the policy)."""


def is_listed(error: BaseException, names: tuple[str, ...]) -> bool:
    """Whether ``error``'s class or a base of it is named in ``names``.

    A name matches a class's ``__name__``, ``__qualname__`` or
    ``module.qualname``, so ``"ValueError"`` also catches its subclasses.
    """
    if not names:
        return False
    for cls in type(error).__mro__:
        if (
            cls.__name__ in names
            or cls.__qualname__ in names
            or f"{cls.__module__}.{cls.__qualname__}" in names
        ):
            return True
    return False


def backoff(policy: RetryPolicy, attempt: int, rand: Callable[[], float] = random.random) -> float:
    """The wait after failed attempt number ``attempt`` (1-based), jitter included."""
    base = policy.initial_interval * policy.backoff_coefficient ** (attempt - 1)
    delay = min(base, policy.maximum_interval)
    if policy.jitter:
        delay *= 1 + policy.jitter * (2 * rand() - 1)
    return max(0.0, delay)


def retry_delay(
    policy: RetryPolicy | None,
    step: str,
    error: BaseException,
    attempt: int,
    classifier: Classifier | None,
) -> float | None:
    """Seconds to wait before the next attempt, or ``None`` when the step must not run again."""
    if policy is None or isinstance(error, Abort | ExecutionAborted):
        return None
    verdict = None
    if classifier is not None:
        try:
            verdict = classifier(step, error)
        except Exception:  # a broken classifier must not hide the step's own error
            _log.exception("retry classifier raised for step %r; the policy decides", step)
    if verdict is False or (verdict is None and is_listed(error, policy.non_retryable_errors)):
        return None
    if attempt >= policy.max_attempts:
        return None
    return backoff(policy, attempt)
