"""Backoff between provider attempts of one message: capped exponential, or the provider's hint.

Shared by the SMTP and SMS paths of a send page (activities/send/deliverers.py) so both wait alike.
"""

# 0.2 s doubling per attempt, at most BACKOFF_CAP; a provider's Retry-After is honoured up to
# RETRY_AFTER_CAP (a provider asking for more is retried later by the page's own retry instead).
BACKOFF_BASE = 0.2
BACKOFF_CAP = 5.0
RETRY_AFTER_CAP = 30.0


def retry_delay(attempt: int, retry_after: float | None = None) -> float:
    """Seconds to wait before retry number `attempt + 1` (`attempt` counts from 0)."""
    if retry_after is not None:
        return max(0.0, min(retry_after, RETRY_AFTER_CAP))
    return float(min(BACKOFF_BASE * 2**attempt, BACKOFF_CAP))
