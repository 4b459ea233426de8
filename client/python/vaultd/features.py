"""Pseudonymous feature streams as NumPy arrays and labelled DataFrames.

A FetchFeatures row is a 16-byte pseudonym (stable per consumer and purpose,
shown as 32 hex digits, as vaultctl prints it) and one uint64 token per
attribute. What a token means depends on the attribute's kind
(GetFeatureSpec): a keyed hash of a category value (or the attribute's
OTHER token, for values fewer than k consumers hold), 1 + a bucket index,
a year, 1/2 for false/true; 0 is always "no value".

``to_numpy()`` gives the tokens as they are. ``to_pandas()`` labels them:
closed-vocabulary categories become a categorical of their values (the
spec's labels), open categories a categorical of their tokens (their values
are never sent), buckets and age bands an ordered categorical of their
ranges, booleans a nullable boolean, years a nullable integer.
"""
from __future__ import annotations

import binascii
import dataclasses
import itertools
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np
import numpy.typing as npt

from vaultd import errors
from vaultd._pb import vault_pb2 as pb

if TYPE_CHECKING:
    import pandas

    from vaultd.client import Client

PSEUDONYM_BYTES = 16
# The label of the OTHER token (a value fewer than k consumers hold).
OTHER_LABEL = "<other>"

Tokens = npt.NDArray[np.uint64]


@dataclasses.dataclass(frozen=True)
class AttributeSpec:
    attribute: str
    kind: str                       # category, bucket, age_band, year, bool
    bucket_edges: tuple[int, ...]
    other_token: int
    k: int
    sensitive: bool
    labels: dict[int, str]          # token -> value, closed vocabularies only

    def bucket_labels(self) -> list[str]:
        """The range each bucket token stands for, token 1 first."""
        e = self.bucket_edges
        if not e:
            return ["all"]
        return ([f"<{e[0]}"] + [f"[{a}, {b})" for a, b in zip(e, e[1:])]
                + [f">={e[-1]}"])


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    purpose: str
    attributes: dict[str, AttributeSpec]

    @classmethod
    def from_pb(cls, r: pb.GetFeatureSpecResponse) -> FeatureSpec:
        return cls(r.purpose, {a.attribute: AttributeSpec(
            a.attribute, a.kind, tuple(a.bucket_edges), a.other_token, a.k,
            a.sensitive, {lab.token: lab.value for lab in a.labels})
            for a in r.attributes})


class FeatureBatch:
    """One batch of rows: pseudonyms (16 bytes each) and tokens (rows x
    attributes, uint64)."""

    def __init__(self, attributes: Sequence[str], pseudonyms: bytes,
                 tokens: Tokens, next_page_token: str = ""):
        self.attributes = tuple(attributes)
        self.pseudonyms = pseudonyms
        self.tokens = tokens
        self.next_page_token = next_page_token

    @classmethod
    def from_pb(cls, b: pb.FeatureBatch) -> FeatureBatch:
        n, m = len(b.rows), len(b.attributes)
        tokens = np.fromiter(itertools.chain.from_iterable(r.tokens for r in b.rows),
                             dtype=np.uint64, count=n * m).reshape(n, m)
        pseudonyms = b"".join(r.pseudonym for r in b.rows)
        if len(pseudonyms) != n * PSEUDONYM_BYTES:
            raise errors.ServerError(grpc.StatusCode.INTERNAL,
                                     "a row's pseudonym is not 16 bytes")
        return cls(b.attributes, pseudonyms, tokens, b.next_page_token)

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def pseudonym_hex(self) -> list[str]:
        return _hex(self.pseudonyms)

    def to_numpy(self) -> Tokens:
        """The tokens, rows x attributes (uint64), as streamed."""
        return self.tokens

    def to_pandas(self, spec: FeatureSpec | None = None) -> pandas.DataFrame:
        """A DataFrame: 'pseudonym' (hex) and one labelled column per
        attribute (see the module's doc); raw uint64 tokens without spec."""
        return frame(self.attributes, self.pseudonyms, self.tokens, spec)


class FeatureStream:
    """FetchFeatures as an iterator of FeatureBatch. A stream broken by
    UNAVAILABLE resumes after the last batch received (its page token), up
    to ``retries`` times in a row; the batches already yielded are not
    repeated. ``page_token`` is where a later call would resume while
    ``done`` is false; once it is true the stream is complete (and the empty
    page_token would start it over)."""

    def __init__(self, client: Client, purpose: str, dataset: str,
                 attributes: list[str], *, batch_size: int, page_token: str,
                 shard: tuple[int, int] | None, retries: int,
                 timeout: float | None):
        if shard is not None and not 0 <= shard[0] < shard[1]:
            raise ValueError("shard: (index, count) with 0 <= index < count")
        self._client = client
        self.purpose, self.dataset, self.attributes = purpose, dataset, attributes
        self.batch_size, self.page_token, self.shard = batch_size, page_token, shard
        self.retries, self.timeout = retries, timeout
        self.rows = 0           # rows yielded so far
        self.resumed = 0        # broken streams resumed
        self.done = False       # the last batch was received
        self._it: Iterator[FeatureBatch] | None = None

    def __iter__(self) -> FeatureStream:
        return self

    def __next__(self) -> FeatureBatch:
        if self.done:
            raise StopIteration
        if self._it is None:
            self._it = self._run()
        try:
            return next(self._it)
        except StopIteration:
            raise
        except BaseException:
            # Iterating again goes on from page_token (after the last batch
            # yielded), not from an exhausted generator.
            self._it = None
            raise

    def _request(self) -> pb.FetchFeaturesRequest:
        idx, cnt = self.shard or (0, 0)
        return pb.FetchFeaturesRequest(
            purpose=self.purpose, dataset_id=self.dataset,
            attributes=self.attributes, page_token=self.page_token,
            batch_size=self.batch_size, shard_index=idx, shard_count=cnt)

    def _run(self) -> Iterator[FeatureBatch]:
        from vaultd.client import backoff
        failures = 0
        while True:
            try:
                for b in self._client._fetch(self._request(), self.timeout):
                    batch = FeatureBatch.from_pb(b)
                    failures = 0
                    self.rows += len(batch)
                    self.page_token = b.next_page_token
                    self.done = not b.next_page_token   # the last batch
                    yield batch
                    if self.done:
                        return
                # Ended without its last batch (an empty page token): the
                # vault always sends one, so the stream was cut; resume.
                broken = "the stream ended before its last batch"
                code = grpc.StatusCode.UNAVAILABLE
            except grpc.RpcError as e:
                broken, code = e.details() or "", e.code()
            if code != grpc.StatusCode.UNAVAILABLE or failures >= self.retries:
                raise errors.error_for(code, broken,
                                       "/vault.v1.Features/FetchFeatures")
            backoff(failures)
            failures += 1
            self.resumed += 1

    def to_numpy(self) -> tuple[npt.NDArray[np.uint8], Tokens]:
        """The rest of the stream: pseudonyms (rows x 16 bytes, uint8) and
        tokens (rows x attributes, uint64)."""
        ps, toks = self._drain()
        return (np.frombuffer(ps, dtype=np.uint8).reshape(-1, PSEUDONYM_BYTES),
                toks)

    def to_pandas(self, spec: FeatureSpec | None = None,
                  labelled: bool = True) -> pandas.DataFrame:
        """The rest of the stream as one DataFrame, labelled with spec (the
        purpose's GetFeatureSpec, asked for when not given; labelled=False
        keeps raw uint64 tokens)."""
        if labelled and spec is None:
            spec = self._client.feature_spec(self.purpose)
        ps, toks = self._drain()
        return frame(self._names, ps, toks, spec if labelled else None)

    def _drain(self) -> tuple[bytes, Tokens]:
        """Every remaining batch. If the stream fails, the batches taken
        here are given back: page_token and rows are as before the call,
        so calling again starts from the same place."""
        parts, pss = [], []
        self._names: tuple[str, ...] = tuple(self.attributes)
        start = (self.page_token, self.rows, self.done)
        try:
            for b in self:
                parts.append(b.tokens)
                pss.append(b.pseudonyms)
                self._names = b.attributes
        except BaseException:
            self.page_token, self.rows, self.done = start
            self._it = None
            raise
        m = len(self._names)
        toks = np.concatenate(parts) if parts else np.zeros((0, m), np.uint64)
        return b"".join(pss), toks


def _hex(pseudonyms: bytes) -> list[str]:
    h = binascii.hexlify(pseudonyms)
    w = 2 * PSEUDONYM_BYTES
    return [h[i:i + w].decode() for i in range(0, len(h), w)]


def column(spec: AttributeSpec | None, col: Tokens) -> Any:
    """One attribute's tokens as a labelled pandas array."""
    import pandas as pd

    if spec is None:
        return pd.array(col, dtype="UInt64")
    missing = col == 0
    if spec.kind == "bool":
        return pd.arrays.BooleanArray(col == 2, missing)
    if spec.kind == "year":
        return pd.arrays.IntegerArray(col.astype(np.int64), missing)
    if spec.kind in ("bucket", "age_band"):
        cats = spec.bucket_labels()
        codes = np.where(missing, 0, col).astype(np.int64) - 1
        codes[codes >= len(cats)] = -1     # not a bucket of this spec
        return pd.Categorical.from_codes(codes, categories=cats, ordered=True)
    if spec.kind == "category" and spec.labels:
        # The spec's values in its order, then OTHER: the same categories in
        # every batch, shard and call, whatever the data holds.
        cats = list(spec.labels.values()) + [OTHER_LABEL]
        index = {t: i for i, t in enumerate(spec.labels)}
        index[spec.other_token] = len(cats) - 1
        uniq, inv = np.unique(col, return_inverse=True)
        for t in uniq.tolist():
            if t != 0 and t not in index:      # not of this spec (a new schema?)
                index[t] = len(cats)
                cats.append(f"token:{t:016x}")
        lut = np.array([index.get(t, -1) for t in uniq.tolist()], dtype=np.int64)
        return pd.Categorical.from_codes(lut[inv], categories=cats)
    if spec.kind == "category":
        # Open: its values never leave the vault, so its categories are the
        # tokens present (OTHER among them).
        uniq, inv = np.unique(col, return_inverse=True)
        # uniq is sorted, so 0 (no value) comes first when present.
        shift = 1 if uniq.size and uniq[0] == 0 else 0
        return pd.Categorical.from_codes(inv.astype(np.int64) - shift,
                                         categories=uniq[shift:])
    return pd.array(col, dtype="UInt64")


def frame(attributes: Sequence[str], pseudonyms: bytes, tokens: Tokens,
          spec: FeatureSpec | None) -> pandas.DataFrame:
    import pandas as pd

    data: dict[str, Any] = {"pseudonym": _hex(pseudonyms)}
    for j, name in enumerate(attributes):
        a = spec.attributes.get(name) if spec is not None else None
        data[name] = column(a, tokens[:, j])
    return pd.DataFrame(data, copy=False)
