"""The one exception tree of findface-grpc.

Domain code raises these; `findface_grpc.rpc.ErrorInterceptor` turns them into gRPC status codes, and the HTTP
gateway turns status codes into the legacy error JSON. Anything else that escapes a handler is a bug: it is
logged with its traceback and answered as INTERNAL. `code` is the name of a gRPC status code, kept as a string so
that domain modules can raise these without importing grpc.
"""
from __future__ import annotations


class FindFaceError(Exception):
    """Root of every error this project raises on purpose. `code` is the gRPC status it maps to."""

    code: str = "INTERNAL"

    def __init__(self, message: str, *, details: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        # Extra machine-readable context (for example the boxes of a rejected multi-face photo); carried to
        # clients as trailing metadata, JSON-encoded.
        self.details = details or {}


class InvalidArgument(FindFaceError):
    code = "INVALID_ARGUMENT"


class InvalidImage(InvalidArgument):
    """The photo bytes cannot be used: empty, truncated, not an image, too large or a pixel bomb."""


# The key in PhotoUnavailable's details: across gRPC its code is INVALID_ARGUMENT like any refused URL's, and the
# details are what tells the two apart.
PHOTO_UNAVAILABLE = "photo_unavailable"


class PhotoUnavailable(InvalidArgument):
    """A photo URL that passed every check gave no usable photo: no answer, an error status, an empty body or one
    over the size cap. The HTTP gateway answers it as the original answers a photo it could not process
    (EXTRACTION_ERROR), where a URL refused as given is a BAD_PARAM."""

    def __init__(self, message: str) -> None:
        super().__init__(message, details={PHOTO_UNAVAILABLE: True})


class NotFound(FindFaceError):
    code = "NOT_FOUND"


class AlreadyExists(FindFaceError):
    code = "ALREADY_EXISTS"


class FailedPrecondition(FindFaceError):
    code = "FAILED_PRECONDITION"


class TooManyFaces(FailedPrecondition):
    """mf_selector=reject and the photo holds more than one face."""


class ResourceExhausted(FindFaceError):
    code = "RESOURCE_EXHAUSTED"


class Unavailable(FindFaceError):
    code = "UNAVAILABLE"


class Unauthenticated(FindFaceError):
    code = "UNAUTHENTICATED"


class PermissionDenied(FindFaceError):
    """A valid token that may not do this (an operator's command from a token that is not an admin's)."""

    code = "PERMISSION_DENIED"


class ConfigError(FindFaceError):
    """Configuration is missing or invalid; raised at start-up, before serving."""

    code = "FAILED_PRECONDITION"


class ModelError(FindFaceError):
    """A model file is missing, altered or cannot be loaded."""

    code = "FAILED_PRECONDITION"
