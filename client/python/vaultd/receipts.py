"""Deletion receipts and their verification.

A receipt's ``signed_bytes`` are its canonical text::

    vaultd deletion receipt v1
    request_id: ...
    consumer_ref: ...
    found: true|false
    deleted_at_ms: N
    epoch: N
    datasets: a,b
    audit_head: hex

and ``signature`` is their Ed25519 signature under the vault's receipt key
(GetKeyStatus.receipt_public_key). Verification checks the signature, then
that every decoded field equals its signed value, so a receipt cannot say
more than was signed. It needs PyNaCl (Debian's python3-nacl).
"""
from __future__ import annotations

import dataclasses
from typing import Any

from vaultd.errors import ReceiptInvalid

HEAD = b"vaultd deletion receipt v1\n"
FIELDS = ("request_id", "consumer_ref", "found", "deleted_at_ms", "epoch",
          "datasets", "audit_head")


@dataclasses.dataclass(frozen=True)
class Receipt:
    request_id: str
    consumer_ref: str
    found: bool
    deleted_at_ms: int
    epoch: int
    affected_datasets: tuple[str, ...]
    audit_head: str
    signed_bytes: bytes
    signature: bytes
    final_at_ms: int

    @classmethod
    def from_pb(cls, r: Any) -> Receipt:
        return cls(r.request_id, r.consumer_ref, r.found, r.deleted_at_ms,
                   r.epoch, tuple(r.affected_datasets), r.audit_head,
                   bytes(r.signed_bytes), bytes(r.signature), r.final_at_ms)

    def signed_fields(self) -> dict[str, str]:
        """The fields as they appear in the signed text."""
        return {"request_id": self.request_id, "consumer_ref": self.consumer_ref,
                "found": "true" if self.found else "false",
                "deleted_at_ms": str(self.deleted_at_ms), "epoch": str(self.epoch),
                "datasets": ",".join(self.affected_datasets),
                "audit_head": self.audit_head}


def parse_signed(text: bytes) -> dict[str, str]:
    """The canonical receipt text's fields; ReceiptInvalid if it is not one."""
    if not text.startswith(HEAD):
        raise ReceiptInvalid("signed_bytes are not a v1 receipt")
    lines = text[len(HEAD):].split(b"\n")
    if len(lines) != len(FIELDS) + 1 or lines[-1] != b"":
        raise ReceiptInvalid("signed_bytes are not a v1 receipt")
    out = {}
    for name, line in zip(FIELDS, lines):
        prefix = name.encode() + b": "
        if not line.startswith(prefix):
            raise ReceiptInvalid("signed_bytes are not a v1 receipt")
        out[name] = line[len(prefix):].decode()
    return out


def verify_receipt(receipt: Receipt, public_key: bytes) -> None:
    """Raises ReceiptInvalid unless receipt is signed by public_key and
    says exactly what was signed."""
    from nacl.exceptions import BadSignatureError
    from nacl.signing import VerifyKey

    if len(public_key) != 32 or len(receipt.signature) != 64:
        raise ReceiptInvalid("the key or the signature has the wrong size")
    try:
        VerifyKey(public_key).verify(receipt.signed_bytes, receipt.signature)
    except BadSignatureError:
        raise ReceiptInvalid("the signature does not match signed_bytes") from None
    signed = parse_signed(receipt.signed_bytes)
    for name, value in receipt.signed_fields().items():
        if name != "datasets" and signed[name] != value:
            raise ReceiptInvalid(f"{name} differs from the signed bytes")
    # Element by element, as client/receipt.c: ["a,b"] is not "a,b", and
    # [""] is not the empty list.
    listed = signed["datasets"].split(",") if signed["datasets"] else []
    if list(receipt.affected_datasets) != listed:
        raise ReceiptInvalid("affected_datasets differs from the signed bytes")
