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
import json
import os
import pathlib
import tempfile
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas


@dataclasses.dataclass
class PurgeReport:
    files: int = 0              # files read
    changed: int = 0            # files rewritten
    rows_removed: int = 0


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


def _replace(path: pathlib.Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            write(f)
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


def _purge_csv(path: pathlib.Path, gone: set[str], column: str) -> int:
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            return 0
        if column not in header:
            raise ValueError(f"{path.name}: no '{column}' column")
        at = header.index(column)
        rows = list(reader)
    keep = [r for r in rows if len(r) <= at or r[at].lower() not in gone]
    if len(keep) != len(rows):
        _replace(path, lambda f: csv.writer(f, lineterminator="\n").writerows(
            [header] + keep))
    return len(rows) - len(keep)


def _purge_jsonl(path: pathlib.Path, gone: set[str], column: str) -> int:
    with open(path) as f:
        lines = f.readlines()
    keep = [ln for ln in lines if not ln.strip() or
            str(json.loads(ln).get(column, "")).lower() not in gone]
    if len(keep) != len(lines):
        _replace(path, lambda f: f.writelines(keep))
    return len(lines) - len(keep)


def purge_files(directory: str | os.PathLike[str],
                pseudonyms: Iterable[str | bytes | Any],
                column: str = "pseudonym") -> PurgeReport:
    """Removes those pseudonyms' rows from every *.csv and *.jsonl file
    under directory (recursively)."""
    gone = normalise(pseudonyms)
    report = PurgeReport()
    for path in sorted(pathlib.Path(directory).rglob("*")):
        if path.suffix not in (".csv", ".jsonl") or not path.is_file():
            continue
        report.files += 1
        n = (_purge_csv if path.suffix == ".csv" else _purge_jsonl)(path, gone, column)
        report.changed += n > 0
        report.rows_removed += n
    return report
