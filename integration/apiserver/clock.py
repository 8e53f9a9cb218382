"""The server's wall clock: real time, or a time frozen by the test control
POST /_standin/clock?freeze=<RFC 3339> (POST /_standin/clock alone unfreezes).
It stamps creationTimestamp, managedFields times, CRD conditions and token
issue/expiry times."""

import calendar
import time

_frozen = None


def now():
    return _frozen if _frozen is not None else time.time()


def rfc3339(t=None):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now() if t is None else t))


def parse_rfc3339(text):
    """Seconds since the epoch of 2026-01-01T00:00:00Z (fractions and offsets: Z only)."""
    base = text.strip().rstrip("Zz").split(".")[0]
    return calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))


def freeze(t):
    global _frozen
    _frozen = t
