"""The trackerfs exception tree.

Backends raise these; the FUSE layer turns them into errno values in one place. Each
class carries the errno a user sees::

    TrackerfsError                    anything trackerfs reports to a user
    ├── ConfigError                   bad config, credentials file, mount point (exit 2)
    └── TrackerError                  a tracker call failed                      EIO
        ├── AuthenticationError       401: the credentials were refused          EACCES
        ├── PermissionDeniedError     403: not allowed                           EACCES
        ├── NotFoundError             404/410                                    ENOENT
        ├── BadRequestError           400/415/416/422                            EINVAL
        ├── TooLargeError             413 or over the known upload limit         EFBIG
        ├── UnsupportedError          405/501: the tracker cannot do this        EOPNOTSUPP
        ├── RateLimitedError          429 after every retry                      EIO
        ├── TemporaryError            5xx after every retry                      EIO
        │   └── OutcomeUnknownError   sent, but the answer was lost               EIO
        ├── TrackerTimeoutError       no answer in time                          ETIMEDOUT
        ├── UnreachableError          connection refused, DNS, reset             EHOSTUNREACH
        ├── BadResponseError          malformed JSON or an unexpected shape       EIO
        ├── NotPermittedError         a tracker has no such thing (mkdir, links)  EPERM
        ├── CrossDeviceError          a rename the tracker cannot do              EXDEV
        ├── ExistsError               the name is taken (RENAME_NOREPLACE)        EEXIST
        └── SpoolFullError            the local spool disk is full                ENOSPC
"""

from __future__ import annotations

import errno as _errno


class TrackerfsError(Exception):
    """Base class for errors trackerfs reports to a user in one line."""


class ConfigError(TrackerfsError):
    """The configuration, a credential source or the mount point is unusable."""


class TrackerError(TrackerfsError):
    """A call to the tracker failed; `errno` is what the filesystem call returns."""

    errno: int = _errno.EIO

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AuthenticationError(TrackerError):
    """The tracker refused the credentials (401)."""

    errno = _errno.EACCES


class PermissionDeniedError(TrackerError):
    """The credentials are valid but not allowed to do this (403)."""

    errno = _errno.EACCES


class NotFoundError(TrackerError):
    """The thing does not exist or is not visible (404, 410)."""

    errno = _errno.ENOENT


class BadRequestError(TrackerError):
    """The tracker rejected the request as malformed (400, 422)."""

    errno = _errno.EINVAL


class TooLargeError(TrackerError):
    """The upload is over the tracker's size limit (413)."""

    errno = _errno.EFBIG


class UnsupportedError(TrackerError):
    """The tracker cannot do this operation."""

    errno = _errno.EOPNOTSUPP


class RateLimitedError(TrackerError):
    """The tracker kept answering 429 after every retry."""

    errno = _errno.EIO


class TemporaryError(TrackerError):
    """The tracker kept failing (5xx) after every retry."""

    errno = _errno.EIO


class OutcomeUnknownError(TemporaryError):
    """A request that is not safe to repeat may have reached the tracker, but its answer was lost.

    Raised instead of retrying blindly when the connection dropped after the request was
    sent, the answer's body was cut short, or the answer did not come in time. Whoever
    sent it checks whether it was carried out (did the upload land?) before reporting.
    """

    errno = _errno.EIO


class TrackerTimeoutError(TrackerError):
    """The tracker did not answer in time."""

    errno = _errno.ETIMEDOUT


class UnreachableError(TrackerError):
    """The tracker could not be reached at all."""

    errno = _errno.EHOSTUNREACH


class BadResponseError(TrackerError):
    """The tracker answered with something that is not what its API promises."""

    errno = _errno.EIO


class NotPermittedError(TrackerError):
    """The operation has no meaning on a tracker (directories, links, special files)."""

    errno = _errno.EPERM


class CrossDeviceError(TrackerError):
    """A rename the tracker cannot do; `mv` falls back to copy and delete."""

    errno = _errno.EXDEV


class ExistsError(TrackerError):
    """The target name exists and must not be replaced."""

    errno = _errno.EEXIST


class SpoolFullError(TrackerError):
    """The spool disk refused bytes; the file is incomplete and will not be uploaded."""

    errno = _errno.ENOSPC


def explain(exc: TrackerfsError) -> str:
    """What a failure to mount says to a user: a refused sign-in says so first."""
    if isinstance(exc, AuthenticationError):
        return f"the tracker refused the credentials: {exc}"
    return str(exc)
