"""The audit report (issue 18, point 9): computed by the daemon from the
audit log in one pass. A synthetic log is made by running the vault on
earlier days (VAULTD_DEV_CLOCK_SHIFT_S, a --dev vault only): a principal
reads 3 consumers and is denied once a day for 8 days, then touches 60
and is denied 10 times today; the report flags both, with their
baselines, and says nothing with a factor above them."""
import json

import grpc
import pytest

from conftest import free_port, pb
from test_features import fetch
from test_metrics import metrics_url, scrape, set_config

DAY_S = 86400


def report(d, since=0, until=0, factor=0):
    return d.call("/vault.v1.Audit/AuditReport",
                  pb.AuditReportRequest(since_ms=since, until_ms=until,
                                        anomaly_factor=factor),
                  pb.AuditReportResponse, timeout=60)


def at_day(d, monkeypatch, day):
    """Restarts d with its clock day days from now (negative: earlier)."""
    if d.proc is not None and d.proc.poll() is None:
        assert d.stop() == 0
    monkeypatch.setenv("VAULTD_DEV_CLOCK_SHIFT_S", str(day * DAY_S))
    d.start()


def crm_day(d, token, first, n, denials):
    """crm reads consumers first..first+n-1 and is denied denials times."""
    for i in range(first, first + n):
        d.call("/vault.v1.Consumers/GetAttributes",
               pb.GetAttributesRequest(consumer_id=f"a{i}@example.test",
                                       purpose="service"),
               pb.GetAttributesResponse, token=token)
    for _ in range(denials):
        with pytest.raises(grpc.RpcError) as err:
            d.call("/vault.v1.Consumers/ExportConsumer",
                   pb.ExportConsumerRequest(consumer_id="a0@example.test"),
                   pb.ExportConsumerResponse, token=token)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_report_flags_a_synthetic_anomaly(fresh, monkeypatch):
    fresh.start()
    assert fresh.stop() == 0
    crm = fresh.add_principal("crm", ["reader"], ["service"])
    set_config(fresh, metrics_listen=f'"127.0.0.1:{free_port()}"')
    at_day(fresh, monkeypatch, -9)
    fresh.put_many((f"a{i}@example.test", {"age": "40", "device": "mobile"})
                   for i in range(60))
    for day in range(-8, 0):
        at_day(fresh, monkeypatch, day)
        crm_day(fresh, crm, 3 * (day + 8), 3, 1)
    at_day(fresh, monkeypatch, 0)
    crm_day(fresh, crm, 0, 60, 10)

    # The report of today (its 7 days before are the baseline).
    r = fresh.ctl("audit", "report", "--since", "12h", json=True)
    assert r.returncode == 7, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    flagged = {(a["principal"], a["measure"]): a for a in doc["anomalies"]}
    assert set(flagged) == {("crm", "distinct_consumers"), ("crm", "denials")}
    assert flagged["crm", "distinct_consumers"]["value"] == 60
    assert flagged["crm", "distinct_consumers"]["baseline"] == pytest.approx(3)
    assert flagged["crm", "denials"]["value"] == 10
    assert flagged["crm", "denials"]["baseline"] == pytest.approx(1)
    crm_row = [p for p in doc["principals"] if p["principal"] == "crm"][0]
    assert crm_row["distinct_consumers"] == 60 and crm_row["denials"] == 10
    assert doc["verification"]["ok"]
    assert doc["verification"]["checkpoint"].startswith(
        "vaultd audit checkpoint v1\n")
    # The gauge says how many the last report flagged.
    assert scrape(metrics_url(fresh)).get("vaultd_audit_anomalies") == 2
    # Above both: nothing flagged, exit 0.
    r = fresh.ctl("audit", "report", "--since", "12h", "--factor", "30")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "anomalies (factor 30): none" in r.stdout
    # A report of the whole run: the first days have no baseline, and
    # crm's days 2..8 are like their baseline.
    whole = report(fresh, since=0)
    assert {(a.principal, a.measure) for a in whole.anomalies} == {
        ("crm", "distinct_consumers"), ("crm", "denials")}
    assert fresh.stop() == 0


def test_report_counts_what_the_window_holds(daemon):
    for i in range(5):
        daemon.put(f"k{i}@example.test", age="30", device="mobile")
    fetch(daemon, "training", dataset="rep-ds", attributes=["age"])
    fetch(daemon, "training", dataset="rep-ds", attributes=["age"])
    daemon.delete("k0@example.test")
    for cid, kw in (("k1@example.test", {"source": "gpc"}),
                    ("k2@example.test", {"source": "admt_opt_out"}),
                    ("k3@example.test", {"purpose": "training",
                                         "source": "user"})):
        daemon.call("/vault.v1.Consumers/SetConsent",
                    pb.SetConsentRequest(consumer_id=cid, **kw),
                    pb.SetConsentResponse)
    with daemon.channel() as ch:
        progress = list(daemon.stream(ch, "/vault.v1.Keys/RotateMasterKey",
                                      pb.RotateMasterKeyRequest(),
                                      pb.RotationProgress))
    assert progress[-1].done
    r = report(daemon)
    ds = {d.dataset_id: d for d in r.datasets}
    assert ds["rep-ds"].purpose == "training" and ds["rep-ds"].fetches == 2
    assert ds["rep-ds"].lineage_rows == 4          # k0 was deleted
    assert r.deletions == 1 and r.deletions_pending_final == 1
    assert (r.consent_changes, r.gpc_signals, r.admt_opt_outs) == (3, 1, 1)
    assert r.opt_outs == 3
    assert [e.method for e in r.key_events] == [
        "/vault.v1.Keys/RotateMasterKey"]
    assert r.verification.ok and r.verification.entries > 0
    dev = [p for p in r.principals if p.principal == "dev"][0]
    assert dev.distinct_consumers == 5 and dev.denials == 0
    assert list(r.anomalies) == []
    assert r.until_ms - r.since_ms == 30 * DAY_S * 1000


def test_report_refuses_a_bad_window(daemon):
    for req, why in ((pb.AuditReportRequest(since_ms=10, until_ms=5),
                      "before until_ms"),
                     (pb.AuditReportRequest(since_ms=1, until_ms=400 * DAY_S
                                            * 1000), "at most 366 days"),
                     (pb.AuditReportRequest(anomaly_factor=1),
                      "anomaly_factor: 2..1000")):
        with pytest.raises(grpc.RpcError) as err:
            daemon.call("/vault.v1.Audit/AuditReport", req,
                        pb.AuditReportResponse)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert why in err.value.details()
    bad = daemon.ctl("audit", "report", "--factor", "1")
    assert bad.returncode == 2 and "--factor wants a number" in bad.stderr
