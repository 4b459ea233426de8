"""Purging deleted consumers from training data already taken.

WatchDeletions tells a dataset's holder which pseudonyms were deleted since
it received them (Client.watch_deletions); these helpers remove their rows
from a DataFrame or from a directory of CSV/JSONL files (as written by
``vaultctl features --format csv|jsonl``: a "pseudonym" field of 32 hex
digits). Files are rewritten atomically (a temporary file, fsync, rename):
a crash leaves each file either as it was or purged, never cut short.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import pathlib
import tempfile
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas


@dataclasses.dataclass
class PurgeReport:
    files: int = 0              # files read
    changed: int = 0            # files rewritten
    rows_removed: int = 0
    # Files left as they were, with why (no pseudonym column, a link, not
    # UTF-8 JSON, ...): the caller must look at these.
    errors: list[tuple[str, str]] = dataclasses.field(default_factory=list)


def normalise(pseudonyms: Iterable[str | bytes | Any]) -> set[str]:
    """Pseudonyms (bytes, hex text, or DeletionEvents) as lowercase hex."""
    out = set()
    for p in pseudonyms:
        p = getattr(p, "pseudonym", p)
        h = p.hex() if isinstance(p, (bytes, bytearray)) else str(p).lower()
        if len(h) != 32 or any(c not in "0123456789abcdef" for c in h):
            raise ValueError("a pseudonym is 16 bytes (32 hex digits)")
        out.add(h)
    return out


def purge_frame(df: pandas.DataFrame, pseudonyms: Iterable[str | bytes | Any],
                column: str = "pseudonym") -> pandas.DataFrame:
    """df without the rows of those pseudonyms (a new frame)."""
    gone = normalise(pseudonyms)
    return df[~df[column].str.lower().isin(gone)]


def _replace(path: pathlib.Path, records: list[bytes]) -> None:
    """path's content becomes records, atomically and durably."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.writelines(records)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _csv_records(path: pathlib.Path, column: str) -> tuple[list[bytes], list[str]]:
    """The file's records as their raw bytes (header first) and each data
    record's pseudonym field. A record may span lines (a quoted newline):
    the reader pulls lines lazily, so the lines it took for a record are
    exactly that record's text, kept byte for byte."""
    text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    raw: list[str] = []

    def lines() -> Iterator[str]:
        for ln in io.StringIO(text, newline=""):
            raw.append(ln)
            yield ln
    records: list[bytes] = []
    fields: list[str] = []
    at = -1
    for rec in csv.reader(lines()):
        chunk = "".join(raw).encode("utf-8", errors="surrogateescape")
        raw.clear()
        if at < 0:
            if column not in rec:
                raise ValueError(f"no '{column}' column")
            at = rec.index(column)
        else:
            fields.append(rec[at].lower() if len(rec) > at else "")
        records.append(chunk)
    return records, fields


def _purge_csv(path: pathlib.Path, gone: set[str], column: str) -> int:
    records, fields = _csv_records(path, column)
    keep = records[:1] + [r for r, f in zip(records[1:], fields) if f not in gone]
    if len(keep) != len(records):
        _replace(path, keep)
    return len(records) - len(keep)


def _purge_jsonl(path: pathlib.Path, gone: set[str], column: str) -> int:
    # Split on "\n" only, each line with its own ending, kept as it is.
    lines = [ln + b"\n" for ln in path.read_bytes().split(b"\n")]
    lines[-1] = lines[-1][:-1]          # nothing followed the last "\n"
    if lines[-1] == b"":
        lines.pop()
    keep = []
    for ln in lines:
        if ln.strip():
            obj = json.loads(ln)
            if not isinstance(obj, dict):
                raise ValueError("a line is not a JSON object")
            if str(obj.get(column, "")).lower() in gone:
                continue
        keep.append(ln)
    if len(keep) != len(lines):
        _replace(path, keep)
    return len(lines) - len(keep)


def purge_files(directory: str | os.PathLike[str],
                pseudonyms: Iterable[str | bytes | Any],
                column: str = "pseudonym") -> PurgeReport:
    """Removes those pseudonyms' rows from every *.csv and *.jsonl file
    under directory (recursively); every other byte of a file is kept. A
    file that cannot be purged (a symbolic or hard link, whose other names
    would keep the rows; no pseudonym column; not JSON) is left as it is
    and listed in the report's errors; the walk goes on."""
    gone = normalise(pseudonyms)
    report = PurgeReport()
    for path in sorted(pathlib.Path(directory).rglob("*")):
        if path.suffix not in (".csv", ".jsonl"):
            continue
        if path.is_symlink() or (path.is_file() and path.stat().st_nlink > 1):
            report.errors.append((str(path), "a link: purge the file it names"))
            continue
        if not path.is_file():
            continue
        report.files += 1
        try:
            n = (_purge_csv if path.suffix == ".csv" else _purge_jsonl)(
                path, gone, column)
        except (ValueError, OSError, csv.Error) as e:
            report.errors.append((str(path), str(e)))
            continue
        report.changed += n > 0
        report.rows_removed += n
    return report
