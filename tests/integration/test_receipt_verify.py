"""vaultctl receipt verify: every field of a JSON receipt is checked against
its signed bytes, a broken line is an error, and --json output is JSON.

One daemon makes the receipts (vaultctl --json delete); the checks then run
offline with --public-key, as an auditor would."""
import json
import subprocess

import pytest

from conftest import SANITIZER_MARKS, VAULTCTL, Daemon
from test_deletion import key_status, load_parallel
from test_features import fetch

# The fields of signed_bytes, by their JSON names (docs/operations.md).
SIGNED = ("request_id", "consumer_ref", "found", "deleted_at_ms", "epoch",
          "affected_datasets", "audit_head")


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Receipts from a real daemon: lines (found with two datasets, found,
    not found), the public key in hex, and a verify run with the key fetched
    from the daemon."""
    d = Daemon(tmp_path_factory.mktemp("receipts") / "vault")
    d.start()
    try:
        load_parallel(d, 3, "rv")
        fetch(d, "training", dataset="rv-b")
        fetch(d, "training", dataset="rv-a")
        lines = []
        for args in (("rv0", "--request-id", "dsr-rv0"),
                     ("rv1", "--request-id", "dsr-rv1"),
                     ("nobody", "--request-id", "dsr-nobody")):
            r = d.ctl("delete", *args, json=True)
            assert r.returncode == 0, r.stderr
            lines.append(r.stdout.strip())
        pk = bytes(key_status(d).receipt_public_key).hex()
        path = tmp_path_factory.mktemp("online") / "r.jsonl"
        path.write_text("\n".join(lines) + "\n")
        online = d.ctl("receipt", "verify", str(path))
    finally:
        assert d.stop() == 0, d.log()
    return lines, pk, online


def verify(tmp_path, text, pk, json_out=False, name="r.jsonl"):
    path = tmp_path / name
    path.write_text(text)
    cmd = [VAULTCTL, "--addr", "127.0.0.1:1"] + (["--json"] if json_out else [])
    r = subprocess.run(cmd + ["receipt", "verify", str(path), "--public-key", pk],
                       capture_output=True, text=True, timeout=60)
    for mark in SANITIZER_MARKS:
        assert mark not in r.stderr, r.stderr
    return r


def results(r):
    """--json output: the per-line objects and the summary."""
    docs = [json.loads(l) for l in r.stdout.splitlines()]
    assert docs and "summary" in docs[-1], r.stdout
    assert all("line" in d for d in docs[:-1]), r.stdout
    return docs[:-1], docs[-1]["summary"]


def test_receipts_from_delete_carry_every_signed_field(made):
    lines, _, _ = made
    for line in lines:
        doc = json.loads(line)
        for f in SIGNED:
            assert f in doc, f
    first = json.loads(lines[0])
    assert first["found"] is True
    assert first["affected_datasets"] == ["rv-a", "rv-b"]
    assert json.loads(lines[2])["found"] is False


def test_untampered_receipts_are_valid(made, tmp_path):
    lines, pk, online = made
    assert online.returncode == 0, online.stdout + online.stderr
    assert online.stdout.count("valid") == 3 and "INVALID" not in online.stdout
    r = verify(tmp_path, "\n".join(lines) + "\n", pk)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout.splitlines()
    assert len(out) == 3
    for n, (o, line) in enumerate(zip(out, lines), 1):
        assert o == f"line {n}: valid {json.loads(line)['request_id']}"
    # The last line without its newline is still a whole receipt.
    assert verify(tmp_path, "\n".join(lines), pk).returncode == 0


def _set(field, value):
    def f(doc):
        doc[field] = value(doc[field]) if callable(value) else value
    return f


def _flip_first(field):
    """Changes the first base64 character: same length, other bytes."""
    return _set(field, lambda v: ("B" if v[0] == "A" else "A") + v[1:])


def _drop(field):
    def f(doc):
        del doc[field]
    return f


# (name, which receipt line, change)
TAMPER = [
    ("found_flipped", 0, _set("found", False)),
    ("found_flipped_notfound", 2, _set("found", True)),
    ("found_as_string", 0, _set("found", "true")),
    ("found_as_int", 0, _set("found", 1)),
    ("deleted_at_ms", 0, _set("deleted_at_ms", lambda v: v + 1)),
    ("deleted_at_ms_as_string", 0, _set("deleted_at_ms", lambda v: str(v))),
    ("deleted_at_ms_as_real", 0, _set("deleted_at_ms", lambda v: float(v))),
    ("epoch", 0, _set("epoch", lambda v: v + 1)),
    ("epoch_negative", 0, _set("epoch", lambda v: -v)),
    ("datasets_dropped", 0, _set("affected_datasets", lambda v: v[:1])),
    ("datasets_added", 0, _set("affected_datasets", lambda v: v + ["rv-c"])),
    ("datasets_reordered", 0, _set("affected_datasets", lambda v: v[::-1])),
    ("datasets_joined", 0, _set("affected_datasets", lambda v: [",".join(v)])),
    ("datasets_emptied", 0, _set("affected_datasets", [])),
    ("datasets_on_notfound", 2, _set("affected_datasets", ["rv-a"])),
    ("datasets_as_string", 0, _set("affected_datasets", lambda v: ",".join(v))),
    ("audit_head", 0, _set("audit_head", "ab" * 32)),
    ("request_id", 0, _set("request_id", "dsr-other")),
    ("consumer_ref", 0, _set("consumer_ref", "0" * 64)),
    ("final_at_ms_as_string", 0, _set("final_at_ms", "0")),
    ("final_at_ms_negative", 0, _set("final_at_ms", -1)),
    ("extra_field", 0, _set("note", "not signed")),
    ("signature", 0, _flip_first("signature")),
    ("signature_short", 0, _set("signature", lambda v: v[:-4])),
    ("signed_bytes", 0, _flip_first("signed_bytes")),
    ("signed_bytes_not_base64", 0, _set("signed_bytes", lambda v: v[:-1] + "*")),
] + [(f"missing_{f}", 0, _drop(f)) for f in SIGNED + ("signed_bytes", "signature")]


@pytest.mark.parametrize("name,which,change", TAMPER, ids=[t[0] for t in TAMPER])
def test_tampered_field_is_invalid(made, tmp_path, name, which, change):
    lines, pk, _ = made
    doc = json.loads(lines[which])
    change(doc)
    tampered = list(lines)
    tampered[which] = json.dumps(doc)
    r = verify(tmp_path, "\n".join(tampered) + "\n", pk)
    assert r.returncode == 1, r.stdout + r.stderr
    out = r.stdout.splitlines()
    assert len(out) == 3, r.stdout
    assert out[which].startswith(f"line {which + 1}: INVALID"), r.stdout
    assert sum("INVALID" in o for o in out) == 1, r.stdout
    r = verify(tmp_path, "\n".join(tampered) + "\n", pk, json_out=True)
    assert r.returncode == 1
    per_line, summary = results(r)
    bad = [d for d in per_line if not d["valid"]]
    assert [d["line"] for d in bad] == [which + 1] and bad[0]["reason"]
    assert summary["valid"] == 2 and summary["invalid"] == 1


def test_duplicate_field_is_invalid(made, tmp_path):
    """Two "found" keys: whichever a reader keeps, the line is refused."""
    lines, pk, _ = made
    flipped = lines[0][:-1] + ',"found":false}'
    r = verify(tmp_path, flipped + "\n", pk)
    assert r.returncode == 1 and r.stdout.startswith("line 1: INVALID"), r.stdout


def test_final_at_ms_is_not_signed(made, tmp_path):
    """final_at_ms is outside the signed bytes (it is set when the epoch's
    key is destroyed, after signing): any non-negative integer passes."""
    lines, pk, _ = made
    doc = json.loads(lines[0])
    doc["final_at_ms"] = doc["deleted_at_ms"] + 1000
    assert verify(tmp_path, json.dumps(doc) + "\n", pk).returncode == 0


@pytest.mark.parametrize("cut", [1, 40, -60, -1])
def test_truncated_line_is_an_error(made, tmp_path, cut):
    lines, pk, _ = made
    text = lines[0] + "\n" + lines[1][:cut] + "\n" + lines[2] + "\n"
    r = verify(tmp_path, text, pk)
    assert r.returncode == 1, r.stdout + r.stderr
    out = r.stdout.splitlines()
    assert out[0].startswith("line 1: valid") and out[2].startswith("line 3: valid")
    assert out[1].startswith("line 2: INVALID"), r.stdout
    assert "1 of 3" in r.stderr, r.stderr
    # The same cut at the end of the file, without a newline.
    r = verify(tmp_path, lines[0] + "\n" + lines[1][:cut], pk)
    assert r.returncode == 1 and "line 2: INVALID" in r.stdout, r.stdout


@pytest.mark.parametrize("junk", ["[1, 2]", '"a receipt"', "42", "not json",
                                  '{"error": {"code": "UNAVAILABLE"}}', "{}"])
def test_line_that_is_not_a_receipt_is_an_error(made, tmp_path, junk):
    lines, pk, _ = made
    r = verify(tmp_path, junk + "\n" + lines[0] + "\n", pk)
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.splitlines()[0].startswith("line 1: INVALID"), r.stdout


def test_file_without_receipts_is_an_error(made, tmp_path):
    _, pk, _ = made
    assert verify(tmp_path, "", pk).returncode == 1
    assert verify(tmp_path, "\n\n", pk).returncode == 1


def test_json_output(made, tmp_path):
    lines, pk, _ = made
    doc = json.loads(lines[1])
    doc["found"] = False
    text = "\n".join([lines[0], json.dumps(doc), "", lines[2][:-5], lines[2]]) + "\n"
    r = verify(tmp_path, text, pk, json_out=True)
    assert r.returncode == 1, r.stdout + r.stderr
    per_line, summary = results(r)
    assert [(d["line"], d["valid"]) for d in per_line] == \
        [(1, True), (2, False), (4, False), (5, True)]
    ids = [json.loads(l)["request_id"] for l in lines]
    assert [d["request_id"] for d in per_line] == [ids[0], ids[1], None, ids[2]]
    assert per_line[0]["reason"] is None and per_line[3]["reason"] is None
    assert "found" in per_line[1]["reason"]
    assert "truncated" in per_line[2]["reason"]
    assert summary == {"lines": 4, "valid": 2, "invalid": 2}
    # All valid: exit 0, and the summary says so.
    r = verify(tmp_path, "\n".join(lines) + "\n", pk, json_out=True)
    assert r.returncode == 0, r.stdout + r.stderr
    per_line, summary = results(r)
    assert all(d["valid"] and d["reason"] is None for d in per_line)
    assert summary == {"lines": 3, "valid": 3, "invalid": 0}


def test_usage_errors_keep_exit_code_2(made, tmp_path):
    _, pk, _ = made
    r = subprocess.run([VAULTCTL, "receipt", "verify", str(tmp_path / "absent"),
                        "--public-key", pk], capture_output=True, text=True)
    assert r.returncode == 2
    r = subprocess.run([VAULTCTL, "receipt", "verify", str(tmp_path / "absent"),
                        "--public-key", "zz"], capture_output=True, text=True)
    assert r.returncode == 2
