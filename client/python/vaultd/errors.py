"""Errors: one exception class per family of gRPC status codes.

Every error the vault answers carries its status code and the server's
message, which names the offending field and never echoes a value (see
docs/security.md). Catch a family (``except vaultd.InvalidArgument``) or
the base class ``VaultError``.
"""
from __future__ import annotations

from typing import Any

import grpc


class VaultError(Exception):
    """A call the vault (or the channel to it) refused or failed."""

    def __init__(self, code: grpc.StatusCode, message: str, method: str = ""):
        self.code = code
        self.message = message
        self.method = method
        where = f"{method}: " if method else ""
        super().__init__(f"{where}{code.name}: {message}")


class InvalidArgument(VaultError):
    """The request is wrong: INVALID_ARGUMENT or OUT_OF_RANGE."""


class NotFound(VaultError):
    """NOT_FOUND: no such consumer (or key version)."""


class Conflict(VaultError):
    """The vault's state refuses the call as asked: ALREADY_EXISTS,
    FAILED_PRECONDITION or ABORTED (e.g. a rotation already running)."""


class Unauthenticated(VaultError):
    """UNAUTHENTICATED: no usable token or client certificate."""


class PermissionDenied(VaultError):
    """PERMISSION_DENIED: the principal's role or purposes do not allow it,
    or the consumer's consent does not cover the purpose."""


class Unavailable(VaultError):
    """Transient: UNAVAILABLE, DEADLINE_EXCEEDED or RESOURCE_EXHAUSTED.
    Idempotent calls are retried on UNAVAILABLE before this is raised."""


class Cancelled(VaultError):
    """CANCELLED: the call was cancelled."""


class ServerError(VaultError):
    """The vault failed: INTERNAL, DATA_LOSS, UNKNOWN or UNIMPLEMENTED."""


class ReceiptInvalid(Exception):
    """A deletion receipt whose signature or fields do not verify."""


class PartialDeletion(Exception):
    """delete_many stopped at a failed batch. receipts: those of the batches
    done, in input order; pending: the (consumer_id, request_id) pairs not
    confirmed, to send again as they are; cause: what stopped it."""

    def __init__(self, receipts: list[Any], pending: list[tuple[str, str]],
                 cause: Exception):
        self.receipts, self.pending, self.cause = receipts, pending, cause
        super().__init__(f"{len(receipts)} deletions confirmed, {len(pending)} "
                         f"pending: {cause}")


_FAMILY: dict[grpc.StatusCode, type[VaultError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: Conflict,
    grpc.StatusCode.FAILED_PRECONDITION: Conflict,
    grpc.StatusCode.ABORTED: Conflict,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: Unavailable,
    grpc.StatusCode.RESOURCE_EXHAUSTED: Unavailable,
    grpc.StatusCode.CANCELLED: Cancelled,
}


def error_for(code: grpc.StatusCode, message: str, method: str = "") -> VaultError:
    """The VaultError of code's family."""
    return _FAMILY.get(code, ServerError)(code, message, method)


def from_rpc_error(e: grpc.RpcError, method: str = "") -> VaultError:
    """The VaultError subclass for a grpc.RpcError raised by a call."""
    code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
    details = e.details() if hasattr(e, "details") else str(e)
    return error_for(code, details or "", method)
