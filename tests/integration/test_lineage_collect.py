"""A deletion batch whose lineage passes LINEAGE_FORGET_INLINE (1,024 rows)
removes that many in its own write and leaves the rest, with the consumers'
collection entries, to the collector (lineage.h): every receipt still names
every dataset, the rows are gone once collected, and a consumer put again at
the same id before the collector ran inherits none of them."""
import re
import time

from conftest import BACKEND
from test_admt import export
from test_audit_report import report
from test_deletion import delete_many
from test_features import fetch
from test_integrity import check

N, DATASETS, INLINE = 1000, 5, 1024     # 5,000 lineage rows in one batch
NAMES = [f"lc-{j}" for j in range(DATASETS)]


def lineage(d):
    return {x.dataset_id: x.lineage_rows for x in report(d).datasets
            if x.dataset_id in NAMES}


def restart_with_janitor(d, interval_ms):
    d.stop()
    # The store as left so far passes the offline check (vaultd --check).
    if BACKEND == "lmdb":
        r = check(d)
        assert r.returncode == 0, r.stdout + r.stderr
    conf = d.data_dir / "vaultd.conf"
    text = re.sub(r"\njanitor_interval_ms = \d+;\n", "\n", conf.read_text())
    conf.write_text(text + f"\njanitor_interval_ms = {interval_ms};\n")
    d.start()


def test_a_large_deletion_leaves_lineage_to_the_collector(daemon):
    daemon.put_many((f"lc{i}", dict(age=str(20 + i % 40), device="mobile"))
                    for i in range(N))
    for name in NAMES:
        fetch(daemon, "training", dataset=name, attributes=["age"],
              batch_size=1000)
    assert lineage(daemon) == {name: N for name in NAMES}

    restart_with_janitor(daemon, 3600000)     # the collector waits
    receipts = delete_many(daemon, [f"lc{i}" for i in range(N)],
                           [f"lc-del-{i}" for i in range(N)])
    assert all(r.found and sorted(r.affected_datasets) == NAMES
               for r in receipts)
    left = sum(lineage(daemon).values())
    removed = N * DATASETS - left
    assert INLINE - DATASETS < removed <= INLINE, removed

    # Put again before the collector ran: none of the old lineage is its.
    daemon.put("lc999", age="41")
    assert list(export(daemon, "lc999").datasets) == []
    assert sum(lineage(daemon).values()) == left - DATASETS
    # A repeat of the batch answers the same receipts.
    again = delete_many(daemon, ["lc3"], ["lc-del-3"])
    assert bytes(again[0].signed_bytes) == bytes(receipts[3].signed_bytes)

    restart_with_janitor(daemon, 100)
    deadline = time.monotonic() + 30
    while sum(lineage(daemon).values()) != 0:
        assert time.monotonic() < deadline, lineage(daemon)
        time.sleep(0.1)
    assert list(export(daemon, "lc999").datasets) == []
    restart_with_janitor(daemon, 1000)        # checks the store once more
    daemon.assert_sanitizer_clean()
