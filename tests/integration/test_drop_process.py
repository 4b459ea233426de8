"""Processing DROP lists (issue 18, points 2 and 3): vaultctl drop process
matches a list file's hashed identifiers against the vault's index and
reports the specification's statuses (3 deleted, 4 opted out, 2 exempted,
5 not found); a Removed file cancels first; a run again gives the same
statuses and receipts; an identifier deleted through DROP and written
again opts its consumer out of sale and sharing (the suppression list)."""
import base64
import hashlib
import json
import re
import time

import grpc
import pytest

from conftest import pb
from test_features import fetch, rows

SCHEMA_EXTRA = (
    '  { name = "first_name"; type = "string"; max_length = 64; '
    'drop_identifier = "first_name"; },\n'
    '  { name = "last_name"; type = "string"; max_length = 64; '
    'drop_identifier = "last_name"; },\n'
    '  { name = "dob"; type = "date"; feature = "none"; '
    'drop_identifier = "dob"; },\n'
    '  { name = "phone"; type = "string"; max_length = 32; '
    'drop_identifier = "phone"; },\n'
    '  { name = "maid"; type = "string"; max_length = 64; '
    'drop_identifier = "maid"; },\n'
    '  { name = "ctv_id"; type = "string"; max_length = 64; '
    'drop_identifier = "ctv_id"; },\n'
    '  { name = "vin"; type = "string"; max_length = 32; '
    'drop_identifier = "vin"; },\n')


def b64sha(s):
    return base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()


def ndz(first, last, dob, zip_):
    return b64sha(b64sha(first) + b64sha(last) + b64sha(dob) + b64sha(zip_))


def drop_vault(fresh):
    fresh.start()
    assert fresh.stop() == 0
    conf = fresh.data_dir / "vaultd.conf"
    text = conf.read_text()
    text, n = re.subn(r'(\{ name = "email"; type = "string";)',
                      r'\1 drop_identifier = "email";', text)
    assert n == 1
    text, n = re.subn(r'(\{ name = "zip"; type = "string";)',
                      r'\1 drop_identifier = "zip";', text)
    assert n == 1
    text = text.replace("schema = (\n", "schema = (\n" + SCHEMA_EXTRA, 1)
    conf.write_text(text + "\njanitor_interval_ms = 200;\n")
    fresh.start()
    # Lists are matched once the index holds every consumer.
    deadline = time.monotonic() + 30
    while "the DROP index is built" not in fresh.log():
        assert time.monotonic() < deadline, fresh.log()
        time.sleep(0.05)
    put = fresh.put
    put("a", email="Ann@Example.test", phone="4155550001", age="30",
        device="mobile")
    put("b", email="b@example.test", phone="+1 (415) 555-0000", age="31",
        device="mobile")
    put("c", email="c@example.test", phone="415.555.0000", age="32",
        device="mobile")
    put("d", email="dee@example.test", age="33", device="mobile")
    put("e", first_name="Danielle", last_name="Johnson", dob="1985-07-04",
        zip="91790", age="34", device="mobile")
    put("f", email="fay@example.test", age="35", device="mobile")
    fresh.call("/vault.v1.Consumers/SetConsent",
               pb.SetConsentRequest(consumer_id="d", source="api",
                                    legal_hold=pb.FLAG_SET),
               pb.SetConsentResponse)
    return fresh


def write(path, header, lines):
    path.write_text(header + "\n" + "".join(l + "\n" for l in lines))
    return path


def results(path):
    lines = path.read_text().splitlines()
    assert lines[0] == "Id,Status"
    return dict(l.split(",") for l in lines[1:])


def test_lists_removed_rerun_and_suppression(fresh, tmp_path):
    d = drop_vault(fresh)
    removed = write(tmp_path / "20260901_0042_Removed.csv", "ID,Hash,ListType",
                    ["R1," + b64sha("fay@example.test") + ",Email"])
    email = write(tmp_path / "20260901_0042_Email.csv", "ID,Hash", [
        "A1," + b64sha("ann@example.test"),
        "D1," + b64sha("dee@example.test"),
        "F1," + b64sha("fay@example.test"),
        "X1," + b64sha("nobody@example.test")])
    phone = write(tmp_path / "20260901_0042_Phone.csv", "ID,Hash", [
        "P1," + b64sha("4155550000")])
    ndz_file = write(tmp_path / "20260901_0042_NDZ.csv", "ID,Hash", [
        "N1," + ndz("danielle", "johnson", "19850704", "91790")])
    out = tmp_path / "results.csv"
    rc = tmp_path / "receipts.jsonl"

    r = d.ctl("drop", "process", str(removed), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert results(out) == {}                       # cancellations: no status
    r = d.ctl("drop", "process", str(email), "--out", str(out),
              "--receipts", str(rc))
    assert r.returncode == 0, r.stderr
    assert results(out) == {"A1": "3", "D1": "2", "X1": "5"}
    assert "1 deleted, 0 opted out, 1 exempted, 1 not found, 1 cancelled" in \
        r.stderr
    for f, want in ((phone, {"P1": "4"}), (ndz_file, {"N1": "3"})):
        r = d.ctl("drop", "process", str(f), "--out", str(out),
                  "--receipts", str(rc))
        assert r.returncode == 0, r.stderr
        assert results(out) == want

    for cid in ("a", "e"):
        with pytest.raises(grpc.RpcError) as err:
            d.get(cid)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    for cid in ("d", "f"):                          # exempted, cancelled
        assert d.get(cid, ["age"])
    # Shared: both kept, both out of sale and sharing.
    ads = rows(fetch(d, "ad_targeting_shared", attributes=["age"]))
    assert len(ads) == 2                            # d and f
    # The receipts are the deletions', signed; request ids name the item.
    lines = [json.loads(l) for l in rc.read_text().splitlines()]
    assert sorted(x["request_id"] for x in lines) == ["drop-A1", "drop-N1"]
    v = d.ctl("receipt", "verify", str(rc))
    assert v.returncode == 0, v.stdout + v.stderr

    # Again: the same statuses, the same receipts.
    out2 = tmp_path / "again.csv"
    rc2 = tmp_path / "again.jsonl"
    r = d.ctl("drop", "process", str(email), "--out", str(out2),
              "--receipts", str(rc2))
    assert r.returncode == 0, r.stderr
    assert results(out2) == {"A1": "3", "D1": "2", "X1": "5"}
    again = json.loads(rc2.read_text())
    first = [x for x in lines if x["request_id"] == "drop-A1"][0]
    assert again["signature"] == first["signature"]

    # Suppression: the deleted email written again opts out of sale/share.
    d.put("a2", email="ann@example.test", age="36", device="mobile")
    x = d.call("/vault.v1.Consumers/ExportConsumer",
               pb.ExportConsumerRequest(consumer_id="a2"),
               pb.ExportConsumerResponse)
    assert x.opt_out_sale_share
    assert x.consent_history[-1].source == "drop"
    assert len(rows(fetch(d, "ad_targeting_shared", dataset="ads-2",
                          attributes=["age"]))) == 2
    assert "ann@example.test" not in d.log()

    # The list again, with a2 holding A1's identifier: the first receipt,
    # and a2 stays (opted out above), as any run of the item answers.
    rc3 = tmp_path / "third.jsonl"
    r = d.ctl("drop", "process", str(email), "--out", str(out2),
              "--receipts", str(rc3))
    assert r.returncode == 0, r.stderr
    assert results(out2) == {"A1": "3", "D1": "2", "X1": "5"}
    assert json.loads(rc3.read_text())["signature"] == first["signature"]
    assert d.get("a2", ["age"])
    assert d.stop() == 0


def test_bad_lists_are_refused(fresh, tmp_path):
    d = drop_vault(fresh)
    bad = write(tmp_path / "20260901_0042_Email.csv", "ID,Hash",
                ["A1,not-base64"])
    r = d.ctl("drop", "process", str(bad))
    assert r.returncode == 4, r.stderr
    assert "items[0].hash: not a SHA-256 in standard padded Base64" in r.stderr
    nolist = write(tmp_path / "list.csv", "ID,Hash", ["A1," + b64sha("x")])
    r = d.ctl("drop", "process", str(nolist))
    assert r.returncode == 2 and "give --list-type" in r.stderr
    r = d.ctl("drop", "process", str(nolist), "--list-type", "SSN")
    assert r.returncode == 4 and "list_type: not a DROP list" in r.stderr
    header = write(tmp_path / "h.csv", "Id,Hash,Extra", ["A1,x,y"])
    r = d.ctl("drop", "process", str(header), "--list-type", "Email")
    assert r.returncode == 2 and "the header must be ID,Hash" in r.stderr
    with pytest.raises(grpc.RpcError) as err:
        d.call("/vault.v1.Deletion/ProcessDropList",
               pb.ProcessDropListRequest(list_type="Email", items=[
                   pb.DropItem(id="bad id!", hash=b64sha("x"))]),
               pb.ProcessDropListResponse)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "items[0].id: may hold only letters and digits" in \
        err.value.details()
    assert d.stop() == 0


def test_every_list_type_matches(fresh, tmp_path):
    """Email, Phone, MAID, CTVID, NDZ and NameVIN: each list's hash, as the
    specification standardizes it, finds the consumer it was made from."""
    d = drop_vault(fresh)
    d.put("g", maid="A3F1C2D4-5678-90AB-CDEF-1234567890AB", age="40")
    d.put("h", ctv_id="SmartTV_9F8E7D6C", age="41")
    d.put("i", first_name="Eve", last_name="Genesis",
          vin="1HGCM82633A004352", age="42")
    vectors = {
        "Email": b64sha("c@example.test"),
        "Phone": b64sha("4155550001"),
        "MAID": b64sha("a3f1c2d4567890abcdef1234567890ab"),
        "CTVID": b64sha("smarttv9f8e7d6c"),
        "NDZ": "PQOfn1RffEKmqMmNAzDKKaoZCwxWbQZkQzPWmQo9REA=",
        "NameVIN": "rtnDuXIe63jXYQQXW5r07GJ7lSsrib8+46QuKFwkOmk=",
    }
    for n, (kind, h) in enumerate(vectors.items()):
        f = write(tmp_path / f"20260901_0042_{kind}.csv", "ID,Hash",
                  [f"K{n}," + h])
        out = tmp_path / f"{kind}.out"
        r = d.ctl("drop", "process", str(f), "--out", str(out))
        assert r.returncode == 0, (kind, r.stderr)
        assert results(out) == {f"K{n}": "3"}, kind
    for cid in ("a", "c", "e", "g", "h", "i"):
        with pytest.raises(grpc.RpcError) as err:
            d.get(cid)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND, cid
    assert d.stop() == 0


def test_no_identifiers_no_processing(daemon):
    with pytest.raises(grpc.RpcError) as err:
        daemon.call("/vault.v1.Deletion/ProcessDropList",
                    pb.ProcessDropListRequest(list_type="Email", items=[
                        pb.DropItem(id="A1", hash=b64sha("x"))]),
                    pb.ProcessDropListResponse)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no schema attribute is a drop_identifier" in err.value.details()
