"""The vaultd client: every RPC of vault.v1 with Python signatures.

Connection settings follow vaultctl: arguments first, then the environment
(``VAULT_ADDR``, ``VAULT_TOKEN_FILE``, ``VAULT_CA``, ``VAULT_CERT``,
``VAULT_KEY``), then ``127.0.0.1:50051`` in plaintext. With a CA the channel
is TLS; with a certificate and key as well, mutual TLS (the certificate is
the principal). A bearer token may come with either.

Calls that change nothing, and deletions (which carry a request id, so a
retry is recognised by the vault), are retried on UNAVAILABLE with backoff;
other calls are tried once. Each attempt of a unary call has the client's
deadline (``timeout``) unless the call is given its own; streams (features,
watch_deletions, query_audit, rotate_master_key) have none unless given
one, since a stream runs as long as it has something to send.
"""
from __future__ import annotations

import dataclasses
import os
import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from vaultd import errors
from vaultd._pb import vault_pb2 as pb
from vaultd._pb import vault_pb2_grpc as pb_grpc
from vaultd.receipts import Receipt, verify_receipt

if TYPE_CHECKING:
    from vaultd.features import FeatureSpec, FeatureStream

DEFAULT_ADDR = "127.0.0.1:50051"
# The largest answer accepted: an export with a year of access history.
MAX_RECEIVE_BYTES = 64 << 20
DELETE_BATCH = 100          # per DeleteConsumers call (the vault's default cap: 1000)

T = TypeVar("T")

# Whether this process has opened a channel: a forked child of such a
# process may find gRPC's state unusable, even once the channel is closed
# (seen here), so vaultd.torchdata then spawns its workers.
channel_opened = False


def _read(path: str | os.PathLike[str] | None) -> bytes | None:
    if path is None or path == "":
        return None
    with open(path, "rb") as f:
        return f.read()


@dataclasses.dataclass(frozen=True, repr=False)
class Settings:
    """Everything needed to open a channel: picklable, so a PyTorch worker
    process can open its own (gRPC channels do not survive a fork)."""

    addr: str = DEFAULT_ADDR
    token: str | None = None
    ca: bytes | None = None
    cert: bytes | None = None
    key: bytes | None = None
    server_name: str | None = None
    timeout: float = 10.0
    retries: int = 3

    @classmethod
    def resolve(cls, addr: str | None = None, *, token: str | None = None,
                token_file: str | os.PathLike[str] | None = None,
                ca: str | os.PathLike[str] | None = None,
                cert: str | os.PathLike[str] | None = None,
                key: str | os.PathLike[str] | None = None,
                server_name: str | None = None, timeout: float = 10.0,
                retries: int = 3, use_env: bool = True) -> Settings:
        """Settings as Client takes them (arguments, then the environment),
        checked, without opening a channel: what a process that forks
        DataLoader workers should use (see vaultd.torchdata)."""
        env: Mapping[str, str] = os.environ
        if not use_env:
            env = {}
        token_file = token_file or env.get("VAULT_TOKEN_FILE") or None
        if token is None and token_file is not None:
            raw = _read(token_file)
            token = raw.decode().strip() if raw is not None else None
        settings = cls(
            addr=addr or env.get("VAULT_ADDR") or DEFAULT_ADDR,
            token=token.strip() if token else None,
            ca=_read(ca or env.get("VAULT_CA")),
            cert=_read(cert or env.get("VAULT_CERT")),
            key=_read(key or env.get("VAULT_KEY")),
            server_name=server_name, timeout=timeout, retries=retries)
        settings.check()
        return settings

    def check(self) -> None:
        """ValueError unless these settings can open a channel."""
        if self.token is not None and not all(
                0x21 <= ord(c) <= 0x7e for c in self.token):
            raise ValueError("token: a bearer token is printable ASCII without "
                             "spaces")      # never the token itself
        if (self.cert is None) != (self.key is None):
            raise ValueError("cert and key go together (mutual TLS)")
        if self.cert is not None and self.ca is None:
            raise ValueError("a client certificate needs ca (TLS)")
        if self.retries < 0 or self.timeout <= 0:
            raise ValueError("retries must be >= 0 and timeout > 0")

    def __repr__(self) -> str:            # never the token or the key
        mode = "mtls" if self.cert else "tls" if self.ca else "plaintext"
        return (f"Settings(addr={self.addr!r}, {mode}, "
                f"token={'set' if self.token else 'none'})")


@dataclasses.dataclass(frozen=True)
class PutResult:
    created: bool
    written: int
    consumer_ref: str


@dataclasses.dataclass(frozen=True)
class Attributes:
    """A consumer's values for one purpose."""

    values: dict[str, str]
    updated_at_ms: dict[str, int]
    withheld: list[str]
    consumer_ref: str


@dataclasses.dataclass(frozen=True)
class ConsentState:
    consumer_ref: str
    limit_sensitive: bool
    opt_out_sale_share: bool
    created: bool = False   # the consumer was new: consent before data
    opt_out_admt: bool = False  # out of automated-decision (admt) purposes
    legal_hold: bool = False    # a DROP list's match is exempted


@dataclasses.dataclass(frozen=True)
class DeletionEvent:
    seq: int
    dataset_id: str
    pseudonym: str          # hex, as in feature rows and vaultctl's output
    deleted_at_ms: int


@dataclasses.dataclass(frozen=True)
class ConsentRevocation:
    seq: int
    dataset_id: str
    purpose: str
    pseudonym: str          # hex, as in feature rows and vaultctl's output
    revoked_at_ms: int


def _flag(v: bool | None) -> pb.FlagChange:
    if v is None:
        return pb.FLAG_UNCHANGED
    return pb.FLAG_SET if v else pb.FLAG_CLEAR


class Client:
    """A connection to one vaultd. Thread-safe; close it (or use ``with``)."""

    def __init__(self, addr: str | None = None, *, token: str | None = None,
                 token_file: str | os.PathLike[str] | None = None,
                 ca: str | os.PathLike[str] | None = None,
                 cert: str | os.PathLike[str] | None = None,
                 key: str | os.PathLike[str] | None = None,
                 server_name: str | None = None, timeout: float = 10.0,
                 retries: int = 3, use_env: bool = True,
                 receipt_key: bytes | None = None,
                 settings: Settings | None = None):
        if settings is None:
            settings = Settings.resolve(
                addr, token=token, token_file=token_file, ca=ca, cert=cert,
                key=key, server_name=server_name, timeout=timeout,
                retries=retries, use_env=use_env)
        else:
            settings.check()
        self.settings = settings
        global channel_opened
        channel_opened = True
        opts: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES)]
        if settings.server_name:
            opts.append(("grpc.ssl_target_name_override", settings.server_name))
        if settings.ca is not None:
            creds = grpc.ssl_channel_credentials(settings.ca, settings.key,
                                                 settings.cert)
            self._channel = grpc.secure_channel(settings.addr, creds, opts)
        else:
            self._channel = grpc.insecure_channel(settings.addr, opts)
        self._md: list[tuple[str, str]] = (
            [("authorization", f"Bearer {settings.token}")]
            if settings.token else [])
        self.consumers = pb_grpc.ConsumersStub(self._channel)
        self.features_stub = pb_grpc.FeaturesStub(self._channel)
        self.deletion = pb_grpc.DeletionStub(self._channel)
        self.keys = pb_grpc.KeysStub(self._channel)
        self.audit = pb_grpc.AuditStub(self._channel)
        if receipt_key is not None and len(receipt_key) != 32:
            raise ValueError("receipt_key: an Ed25519 public key is 32 bytes")
        self._receipt_key: bytes | None = receipt_key

    @classmethod
    def from_settings(cls, settings: Settings) -> Client:
        return cls(settings=settings)

    def __repr__(self) -> str:
        return f"Client({self.settings!r})"

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ plumbing
    def _call(self, fn: Callable[..., Any], req: Any, *, idempotent: bool,
              timeout: float | None = None) -> Any:
        attempts = 1 + (self.settings.retries if idempotent else 0)
        for i in range(attempts):
            try:
                return fn(req, metadata=self._md,
                          timeout=timeout or self.settings.timeout)
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE or i + 1 == attempts:
                    raise errors.from_rpc_error(e, _method(fn)) from None
                backoff(i)
        raise AssertionError("unreachable")

    def _stream(self, fn: Callable[..., Iterable[T]], req: Any,
                timeout: float | None) -> Iterator[T]:
        try:
            yield from fn(req, metadata=self._md, timeout=timeout)
        except grpc.RpcError as e:
            raise errors.from_rpc_error(e, _method(fn)) from None

    # ----------------------------------------------------------- Consumers
    def put(self, consumer_id: str, attributes: Mapping[str, str],
            timeout: float | None = None) -> PutResult:
        """Writes attribute values (all or none). Not retried: a put that
        reached the vault before its answer was lost would be repeated."""
        req = pb.PutAttributesRequest(consumer_id=consumer_id, attributes=[
            pb.Attribute(name=k, value=v) for k, v in attributes.items()])
        r = self._call(self.consumers.PutAttributes, req, idempotent=False,
                       timeout=timeout)
        return PutResult(r.created, r.written, r.consumer_ref)

    def get(self, consumer_id: str, purpose: str,
            names: Sequence[str] = (), timeout: float | None = None) -> Attributes:
        """The consumer's values usable for purpose (every one when names
        is empty)."""
        r = self._call(self.consumers.GetAttributes, pb.GetAttributesRequest(
            consumer_id=consumer_id, names=list(names), purpose=purpose),
            idempotent=True, timeout=timeout)
        return Attributes({a.name: a.value for a in r.attributes},
                          {a.name: a.updated_at_ms for a in r.attributes},
                          list(r.withheld), r.consumer_ref)

    def set_consent(self, consumer_id: str, purpose: str = "", *,
                    granted: bool = False, source: str = "api",
                    limit_sensitive: bool | None = None,
                    opt_out_sale_share: bool | None = None,
                    opt_out_admt: bool | None = None,
                    legal_hold: bool | None = None,
                    timeout: float | None = None) -> ConsentState:
        """Sets consent for purpose (if given) and/or the consumer-wide
        flags (None leaves a flag as it is). source "gpc" records a Global
        Privacy Control signal, which also opts out of sale/share, and
        "admt_opt_out" an opt-out of automated decision-making (the
        purposes marked admt), as opt_out_admt=True does. A
        consumer not yet in the vault is created with no attributes, so the
        consent holds for data written later (created=True)."""
        r = self._call(self.consumers.SetConsent, pb.SetConsentRequest(
            consumer_id=consumer_id, purpose=purpose, granted=granted,
            source=source, limit_sensitive=_flag(limit_sensitive),
            opt_out_sale_share=_flag(opt_out_sale_share),
            opt_out_admt=_flag(opt_out_admt),
            legal_hold=_flag(legal_hold)),
            idempotent=False, timeout=timeout)
        return ConsentState(r.consumer_ref, r.limit_sensitive,
                            r.opt_out_sale_share, r.created, r.opt_out_admt,
                            r.legal_hold)

    def export(self, consumer_id: str,
               timeout: float | None = None) -> pb.ExportConsumerResponse:
        """The right to know: everything the vault holds of the consumer."""
        r: pb.ExportConsumerResponse = self._call(
            self.consumers.ExportConsumer,
            pb.ExportConsumerRequest(consumer_id=consumer_id),
            idempotent=True, timeout=timeout)
        return r

    # ------------------------------------------------------------ Features
    def feature_spec(self, purpose: str,
                     timeout: float | None = None) -> FeatureSpec:
        """How each attribute becomes a token for purpose, with the labels
        of closed vocabularies."""
        from vaultd.features import FeatureSpec
        r = self._call(self.features_stub.GetFeatureSpec,
                       pb.GetFeatureSpecRequest(purpose=purpose),
                       idempotent=True, timeout=timeout)
        return FeatureSpec.from_pb(r)

    def features(self, purpose: str, dataset: str,
                 attributes: Sequence[str] = (), *, batch_size: int = 1000,
                 page_token: str = "", shard: tuple[int, int] | None = None,
                 retries: int | None = None,
                 timeout: float | None = None) -> FeatureStream:
        """A stream of feature batches for dataset (every consumer whose
        consent covers purpose, or the shard (index, count) of them). A
        broken stream resumes from the last batch's page token, up to
        retries times (the client's by default)."""
        from vaultd.features import FeatureStream
        return FeatureStream(self, purpose, dataset, list(attributes),
                             batch_size=batch_size, page_token=page_token,
                             shard=shard, retries=self.settings.retries
                             if retries is None else retries, timeout=timeout)

    def _fetch(self, req: pb.FetchFeaturesRequest,
               timeout: float | None) -> Iterator[pb.FeatureBatch]:
        """One FetchFeatures call, its errors raw (FeatureStream retries)."""
        return self.features_stub.FetchFeatures(req, metadata=self._md,  # type: ignore[no-any-return]
                                                timeout=timeout)

    # ------------------------------------------------------------ Deletion
    def delete(self, consumer_id: str, request_id: str | None = None,
               timeout: float | None = None) -> Receipt:
        """Deletes the consumer (crypto-shreds its key); the signed receipt.
        The request id (made here when not given) makes a retry safe."""
        req = pb.DeleteConsumerRequest(consumer_id=consumer_id,
                                       request_id=request_id or new_request_id())
        return Receipt.from_pb(self._call(self.deletion.DeleteConsumer, req,
                                          idempotent=True, timeout=timeout))

    def delete_many(self, items: Iterable[str | tuple[str, str]], *,
                    batch_size: int = DELETE_BATCH, verify: bool = True,
                    receipt_key: bytes | None = None,
                    timeout: float | None = None) -> list[Receipt]:
        """Deletes many consumers in batches; the receipts in input order.

        items are consumer ids or (id, request_id) pairs; an id without a
        request id gets one, made once and reused on every retry of its
        batch. With verify (PyNaCl), each receipt's signature is checked
        against receipt_key (the client's, else the vault's GetKeyStatus
        answer: pin the key to trust receipts from a vault you do not),
        its fields against the signed bytes, and each must answer its own
        request. Everything verify needs is ready before anything is sent.

        When a batch fails, PartialDeletion carries the receipts of the
        batches done and the (id, request_id) pairs not confirmed: send
        those again (same request ids) to finish without deleting twice."""
        if isinstance(items, (str, bytes)):
            raise TypeError("items: an iterable of ids or (id, request_id) pairs")
        if not 1 <= batch_size <= 100000:
            raise ValueError("batch_size: 1 to 100000")
        reqs = [pb.DeleteConsumerRequest(consumer_id=i, request_id=new_request_id())
                if isinstance(i, str) else
                pb.DeleteConsumerRequest(consumer_id=i[0],
                                         request_id=i[1] or new_request_id())
                for i in items]
        key = None
        if verify:
            import nacl.signing  # noqa: F401  (fails here, before any deletion)
            key = receipt_key or self.receipt_public_key()
        out: list[Receipt] = []
        for at in range(0, len(reqs), batch_size):
            chunk = reqs[at:at + batch_size]
            try:
                r = self._call(self.deletion.DeleteConsumers,
                               pb.DeleteConsumersRequest(requests=chunk),
                               idempotent=True, timeout=timeout)
                if len(r.receipts) != len(chunk):
                    raise errors.ReceiptInvalid(
                        f"{len(r.receipts)} receipts for {len(chunk)} requests")
                done = []
                for q, rec in zip(chunk, r.receipts):
                    receipt = Receipt.from_pb(rec)
                    if receipt.request_id != q.request_id:
                        raise errors.ReceiptInvalid("a receipt answers another request")
                    if key is not None:
                        verify_receipt(receipt, key)
                    done.append(receipt)
            except (errors.VaultError, errors.ReceiptInvalid) as e:
                raise errors.PartialDeletion(
                    out, [(q.consumer_id, q.request_id) for q in reqs[at:]], e) from e
            out += done
        return out

    def receipt_public_key(self) -> bytes:
        """The receipt key: the client's receipt_key, else the vault's
        (GetKeyStatus, a keyadmin call; asked once, then kept)."""
        if self._receipt_key is None:
            try:
                self._receipt_key = bytes(self.key_status().receipt_public_key)
            except errors.PermissionDenied as e:
                raise errors.PermissionDenied(
                    e.code, "GetKeyStatus is not allowed to this principal: give "
                    "the receipt key (receipt_key=) to verify receipts", e.method) from None
        return self._receipt_key

    def watch_deletions(self, dataset: str, purpose: str = "", after_seq: int = 0,
                        follow: bool = True, reconnects: int = 10,
                        timeout: float | None = None) -> Iterator[DeletionEvent]:
        """Deletions of consumers the dataset received, in ledger order.
        With follow the stream stays open for new ones; a dropped stream
        (UNAVAILABLE) reconnects after the last sequence seen, up to
        reconnects times in a row."""
        def request(after: int) -> pb.WatchDeletionsRequest:
            return pb.WatchDeletionsRequest(dataset_id=dataset, purpose=purpose,
                                            after_seq=after, follow=follow)
        for e in self._watch(self.deletion.WatchDeletions, "WatchDeletions",
                             request, after_seq, reconnects, timeout):
            yield DeletionEvent(e.seq, e.dataset_id, e.pseudonym.hex(),
                                e.deleted_at_ms)

    def watch_consent(self, dataset: str = "", purpose: str = "",
                      after_seq: int = 0, follow: bool = True,
                      reconnects: int = 10,
                      timeout: float | None = None) -> Iterator[ConsentRevocation]:
        """Pseudonyms the dataset (or the purpose's datasets) received that
        may no longer be used for its purpose: an opt-out, a consent
        withdrawn, Global Privacy Control for a sale or share purpose. Drop
        their rows. Resumes as watch_deletions does."""
        def request(after: int) -> pb.WatchConsentRequest:
            return pb.WatchConsentRequest(dataset_id=dataset, purpose=purpose,
                                          after_seq=after, follow=follow)
        for e in self._watch(self.features_stub.WatchConsent, "WatchConsent",
                             request, after_seq, reconnects, timeout):
            yield ConsentRevocation(e.seq, e.dataset_id, e.purpose,
                                    e.pseudonym.hex(), e.revoked_at_ms)

    def _watch(self, stub: Any, name: str, request: Any, after_seq: int,
               reconnects: int, timeout: float | None) -> Iterator[Any]:
        failures = 0
        while True:
            try:
                for e in stub(request(after_seq), metadata=self._md,
                              timeout=timeout):
                    failures = 0
                    after_seq = e.seq
                    yield e
                return
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.UNAVAILABLE or failures >= reconnects:
                    raise errors.from_rpc_error(err, name) from None
                backoff(failures)
                failures += 1

    # ---------------------------------------------------------------- Keys
    def rotate_master_key(self, new_key_id: str = "",
                          timeout: float | None = None) -> Iterator[pb.RotationProgress]:
        """Starts (or follows) an online rotation; its progress until done."""
        return self._stream(self.keys.RotateMasterKey,
                            pb.RotateMasterKeyRequest(new_key_id=new_key_id), timeout)

    def key_status(self, timeout: float | None = None) -> pb.GetKeyStatusResponse:
        r: pb.GetKeyStatusResponse = self._call(
            self.keys.GetKeyStatus, pb.GetKeyStatusRequest(), idempotent=True,
            timeout=timeout)
        return r

    def destroy_master_key(self, version: int,
                           timeout: float | None = None) -> pb.DestroyMasterKeyResponse:
        """Destroys a decrypt-only master key version: deletions of its epoch
        become final. Irreversible."""
        r: pb.DestroyMasterKeyResponse = self._call(
            self.keys.DestroyMasterKey, pb.DestroyMasterKeyRequest(version=version),
            idempotent=False, timeout=timeout)
        return r

    def rotate_consumer_key(self, consumer_id: str,
                            timeout: float | None = None) -> pb.RotateConsumerKeyResponse:
        r: pb.RotateConsumerKeyResponse = self._call(
            self.keys.RotateConsumerKey,
            pb.RotateConsumerKeyRequest(consumer_id=consumer_id),
            idempotent=False, timeout=timeout)
        return r

    # --------------------------------------------------------------- Audit
    def query_audit(self, *, since_ms: int = 0, until_ms: int = 0,
                    principal: str = "", consumer_id: str = "", method: str = "",
                    timeout: float | None = None) -> Iterator[pb.AuditEntry]:
        return self._stream(self.audit.QueryAudit, pb.QueryAuditRequest(
            since_ms=since_ms, until_ms=until_ms, principal=principal,
            consumer_id=consumer_id, method=method), timeout)

    def verify_audit(self, timeout: float | None = None) -> pb.VerifyAuditResponse:
        r: pb.VerifyAuditResponse = self._call(
            self.audit.VerifyAudit, pb.VerifyAuditRequest(), idempotent=True,
            timeout=timeout)
        return r


def new_request_id() -> str:
    """A fresh deletion request id (random, 32 hex digits)."""
    return uuid.uuid4().hex


def backoff(attempt: int) -> None:
    """Sleeps before retry attempt + 1: exponential, capped, jittered."""
    time.sleep(min(2.0, 0.05 * (2 ** attempt)) * (0.5 + random.random()))


def _method(fn: object) -> str:
    """The full method name of a stub's callable, for error messages."""
    m = getattr(fn, "_method", b"")
    return m.decode() if isinstance(m, bytes) else str(m)
