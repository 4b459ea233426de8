#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into tests/fuzz/<target>/.

Small, valid and near-valid inputs, in the encodings the decoders read:
protobuf wire bytes (encoded here by hand, so nothing but python3 is
needed), audit bodies and journal records with real MACs under the fixed
keys of the harnesses (fuzz_common.h: fuzz_key), receipts signed with the
harness's key (needs python3-nacl for those), config and policy files.

Run it again after changing a format; it rewrites only the files it names
(regression inputs saved from findings, crash-*, stay).
    /usr/bin/python3 tests/fuzz/make_seeds.py
"""
import base64
import hashlib
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def fuzz_key(seed, n=32):
    return bytes((seed + 31 * i) & 0xFF for i in range(n))


def put(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ------------------------------------------------------------ protobuf

def varint(n):
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def f_str(num, s):
    if isinstance(s, str):
        s = s.encode()
    return varint(num << 3 | 2) + varint(len(s)) + s


def f_int(num, n):
    return varint(num << 3) + varint(n)


# The order of dispatch_methods in daemon/api/dispatch.c: the selector byte.
METHODS = ["PutAttributes", "GetAttributes", "SetConsent", "ExportConsumer",
           "FetchFeatures", "GetFeatureSpec", "DeleteConsumer",
           "DeleteConsumers", "WatchDeletions", "RotateMasterKey",
           "GetKeyStatus", "DestroyMasterKey", "RotateConsumerKey",
           "QueryAudit", "VerifyAudit", "HealthCheck", "HealthWatch"]


def request(method, body):
    return bytes([METHODS.index(method)]) + body


def attribute(name, value):
    return f_str(1, name) + f_str(2, value)


def requests():
    cid = f_str(1, "c-1001")
    seeds = {
        "put": request("PutAttributes", cid +
                       f_str(2, attribute("email", "a@example.com")) +
                       f_str(2, attribute("age", "42"))),
        "put_nul_value": request("PutAttributes", cid +
                                 f_str(2, attribute("email", "a\0b"))),
        "put_bad_utf8": request("PutAttributes", cid +
                                f_str(2, attribute("zip", b"\xc3\x28"))),
        "put_long_value": request("PutAttributes", cid +
                                  f_str(2, attribute("email", "x" * 4097))),
        "get": request("GetAttributes", cid + f_str(2, "email") +
                       f_str(2, "age") + f_str(3, "service")),
        "consent": request("SetConsent", cid + f_str(2, "research") +
                           f_int(3, 1) + f_str(4, "user") + f_int(5, 1) +
                           f_int(6, 2)),
        "export": request("ExportConsumer", cid),
        "fetch": request("FetchFeatures", f_str(1, "training") +
                         f_str(2, "ds-2026-01") + f_str(3, "age") +
                         f_str(4, "A" * 98) + f_int(5, 100)),
        "spec": request("GetFeatureSpec", f_str(1, "training")),
        "delete": request("DeleteConsumer", cid + f_str(2, "req-1")),
        "delete_batch": request("DeleteConsumers",
                                f_str(1, cid + f_str(2, "req-1")) +
                                f_str(1, f_str(1, "c-2") + f_str(2, "req-2"))),
        "delete_batch_nul": request("DeleteConsumers",
                                    f_str(1, f_str(1, "c\0") + f_str(2, "r"))),
        "watch": request("WatchDeletions", f_str(1, "ds-2026-01") +
                         f_str(2, "training") + f_int(3, 7) + f_int(4, 1)),
        "rotate": request("RotateMasterKey", f_str(1, "key-2026")),
        "key_status": request("GetKeyStatus", b""),
        "destroy": request("DestroyMasterKey", f_int(1, 1)),
        "rekey": request("RotateConsumerKey", cid),
        "query_audit": request("QueryAudit", f_int(1, 1) + f_int(2, 2**40) +
                               f_str(3, "dev") + cid +
                               f_str(5, "/vault.v1.Consumers/GetAttributes")),
        "verify_audit": request("VerifyAudit", b""),
        "health": request("HealthCheck", f_str(1, "")),
        "health_watch": request("HealthWatch", f_str(1, "vault.v1.Consumers")),
        "unknown_fields": request("GetAttributes", cid + f_str(99, "zz") +
                                  f_int(100, 5) + b"\x0d\x01\x02\x03\x04"),
        "truncated": request("PutAttributes", cid + b"\x12\x10\x0a"),
    }
    for name, data in seeds.items():
        put("requests", name, data)


# ---------------------------------------------------------- page tokens

def pagetoken():
    # Odd first byte: order(8) | ref(32) | (index, xor) pairs.
    put("pagetoken", "round_trip", b"\x01" + struct.pack(">Q", 12345) +
        bytes(range(32)))
    put("pagetoken", "round_trip_flip", b"\x01" + struct.pack(">Q", 2**63) +
        bytes(32) + b"\x05\x01\x40\x20")
    # Even first byte: token text. Version 2, the right length, wrong seal.
    blob = b"\x01" + struct.pack(">I", 2) + bytes(range(24)) + bytes(40 + 16)
    put("pagetoken", "sealed_wrong", b"\x00" + base64.urlsafe_b64encode(blob)
        .rstrip(b"="))
    blob = b"\x01" + struct.pack(">I", 1) + bytes(24 + 40 + 16)
    put("pagetoken", "version_1", b"\x00" + base64.urlsafe_b64encode(blob)
        .rstrip(b"="))
    put("pagetoken", "padded", b"\x00" + base64.urlsafe_b64encode(blob + b"x"))
    put("pagetoken", "not_base64", b"\x00page token?")


# ------------------------------------------------------------- receipts

def receipt_text(request_id="req-1", ref="ab" * 32, found="true",
                 at="1767225600000", epoch="1", datasets="ds-a,ds-b",
                 head="cd" * 32):
    return ("vaultd deletion receipt v1\n"
            f"request_id: {request_id}\nconsumer_ref: {ref}\n"
            f"found: {found}\ndeleted_at_ms: {at}\nepoch: {epoch}\n"
            f"datasets: {datasets}\naudit_head: {head}\n")


def receipts():
    put("receipt", "valid", receipt_text())
    put("receipt", "no_datasets", receipt_text(datasets="", head=""))
    put("receipt", "not_found", receipt_text(found="false", datasets=""))
    put("receipt", "long_request_id", receipt_text(request_id="r" * 129))
    put("receipt", "empty_list_items", receipt_text(datasets=",,a,,"))
    put("receipt", "missing_epoch", receipt_text().replace("epoch: 1\n", ""))
    put("receipt", "no_newline_end", receipt_text()[:-1])
    put("receipt", "header_only", "vaultd deletion receipt v1\n")

    try:
        import nacl.signing
    except ImportError:
        print("make_seeds: python3-nacl missing: no receipt_verify seeds")
        return
    sk = nacl.signing.SigningKey(fuzz_key(3))

    def receipt_json(text, **over):
        sig = sk.sign(text.encode()).signature
        o = {"request_id": "req-1", "consumer_ref": "ab" * 32, "found": True,
             "deleted_at_ms": 1767225600000, "epoch": 1,
             "affected_datasets": ["ds-a", "ds-b"], "audit_head": "cd" * 32,
             "final_at_ms": 0,
             "signed_bytes": base64.b64encode(text.encode()).decode(),
             "signature": base64.b64encode(sig).decode()}
        o.update(over)
        return json.dumps(o)

    text = receipt_text()
    put("receipt_verify", "valid", receipt_json(text))
    put("receipt_verify", "valid_resign", "S" + receipt_json(text))
    put("receipt_verify", "changed_dataset",
        receipt_json(text, affected_datasets=["ds-a,ds-b"]))
    put("receipt_verify", "extra_field", receipt_json(text, note="x"))
    put("receipt_verify", "bad_signature",
        receipt_json(text, signature=base64.b64encode(bytes(64)).decode()))
    empty = receipt_text(datasets="", found="false")
    put("receipt_verify", "empty_list",
        "S" + receipt_json(empty, found=False, affected_datasets=[]))
    put("receipt_verify", "not_an_object", "[1, 2]")


# ---------------------------------------------------------------- audit

def audit_body(fields, n=9):
    out = b""
    for f in (fields + [b""] * 9)[:n]:
        if isinstance(f, str):
            f = f.encode()
        out += struct.pack(">H", len(f)) + f
    return out


AUDIT_HDR_PAD = bytes(8 + 32 + 32)


def audit():
    full = audit_body(["dev", "/vault.v1.Consumers/GetAttributes", b"\x11" * 32,
                       "", "service", "", "ok", "email,age", ""])
    v1 = audit_body(["dev", "/vault.v1.Consumers/GetAttributes", b"", "email",
                     "", "", "ok"], 7)
    v1_source = audit_body(["dev", "/vault.v1.Consumers/SetConsent", b"",
                            "source=gpc", "research", "", "ok"], 7)
    escaped = audit_body(["invalid-utf8:a\\xff", "/m", b"", "", "", "", "denied",
                          "", ""])
    raw_bad = audit_body([b"\xff\xfe", "/m", b"", "", "", "", "ok", "", ""])
    put("audit", "entry", b"\x00\x01" + AUDIT_HDR_PAD + full)
    put("audit", "entry_v1", b"\x00\x01" + AUDIT_HDR_PAD + v1)
    put("audit", "entry_v1_source", b"\x00\x01" + AUDIT_HDR_PAD + v1_source)
    put("audit", "entry_escaped", b"\x00\x01" + AUDIT_HDR_PAD + escaped)
    put("audit", "entry_raw_bad", b"\x00\x01" + AUDIT_HDR_PAD + raw_bad)
    put("audit", "entry_bad_ref", b"\x00\x01" + AUDIT_HDR_PAD +
        audit_body(["a", "b", b"\x01\x02", "", "", "", "ok", "", ""]))
    put("audit", "body", b"\x01" + full)
    put("audit", "body_v1", b"\x01" + v1)
    put("audit", "body_8_fields", b"\x01" + audit_body(["a"] * 8, 8))
    put("audit", "text_clean", b"\x02\x40" + "héllo wörld".encode())
    put("audit", "text_invalid", b"\x02\x10" + b"ab\xc0\xafcd\\\x00\x7f")
    put("audit", "text_marked", b"\x02\x05invalid-utf8:\\x41")
    put("audit", "text_cut", b"\x02\x03" + "ééé€€".encode())
    put("audit", "encode", b"\x03dev\x00/vault.v1.Keys/GetKeyStatus\x00\x00"
        b"detail\x00service\x00ds\x00ok\x00a,b\x00user")
    put("audit", "encode_bad_utf8", b"\x03\xff\x00m\x00\x00\xed\xa0\x80")


# -------------------------------------------------------------- journal

def journal_record(seq, at, body, key):
    rec = b"\x01" + struct.pack(">HQQ", len(body), seq, at) + body
    mac = hashlib.blake2b(b"vaultd audit journal v1" + rec, key=key,
                          digest_size=32).digest()
    return rec + mac


def journal():
    key = fuzz_key(11)
    b1 = audit_body(["dev", "/vault.v1.Consumers/GetAttributes", b"\x22" * 32,
                     "", "service", "", "ok", "email", ""])
    b2 = audit_body(["-", "/vault.v1.Keys/GetKeyStatus", b"", "", "", "",
                     "denied", "", ""])
    r1 = journal_record(1, 1767225600000, b1, key)
    r2 = journal_record(2, 1767225600001, b2, key)
    put("journal", "two_records", b"\x00" + r1 + r2)
    put("journal", "cut_short", b"\x00" + r1 + r2[:40])
    put("journal", "bad_mac", b"\x00" + r1[:-1] + bytes([r1[-1] ^ 1]))
    put("journal", "bad_format", b"\x00\x02" + r1[1:])
    put("journal", "bad_body", b"\x00" + journal_record(3, 0, b"\x00\x05ab",
                                                        key))
    put("journal", "remac", b"\x01" + r1 + r2[:-32] + bytes(32))
    put("journal", "empty", b"\x00")


# ---------------------------------------------------------- store journal

def wal_record(seq, ops, key):
    body = b"".join(struct.pack(">BBHI", op, sp, len(k), len(v)) + k + v
                    for op, sp, k, v in ops)
    rec = struct.pack(">IIQ", 0x5657414C, len(body), seq) + body
    mac = hashlib.blake2b(b"vaultd store journal v1" + rec, key=key,
                          digest_size=32).digest()
    return rec + mac


def wal():
    key = fuzz_key(13)
    r1 = wal_record(1, [(1, 1, b"\x22" * 32 + b"email", b"\x01" * 60),
                        (1, 4, b"\x22" * 32, b"\x00\x00\x00\x01")], key)
    r2 = wal_record(2, [(2, 0, b"\x22" * 32, b""),
                        (3, 1, b"\x22" * 32, b"")], key)
    put("wal", "two_records", b"\x00" + r1 + r2 + bytes(64))
    put("wal", "cut_short", b"\x00" + r1 + r2[:40] + bytes(32))
    put("wal", "bad_mac", b"\x00" + r1[:-1] + bytes([r1[-1] ^ 1]) + r2)
    put("wal", "bad_magic", b"\x00\x00" + r1[1:] + r2)
    put("wal", "bad_op", b"\x00" + wal_record(3, [(9, 1, b"k", b"")], key))
    put("wal", "remac", b"\x01" + r1 + r2[:-32] + bytes(32))
    put("wal", "zeros", b"\x00" + bytes(100))


# --------------------------------------------------- config and policy

DEV_CONFIG = """listen = "127.0.0.1:50051";
store_dir = "db";
keys_dir = "keys";
policy_file = "policy.conf";
token_pepper_file = "keys/token-pepper";
insecure_plaintext = true;
log_level = "info";
disk_reserve_mb = 4;
audit_journal_reserve_mb = 1;
suppression_k = 5;
schema = (
  { name = "email"; type = "string"; max_length = 254; },
  { name = "age"; type = "int"; min = 0L; max = 130L;
    buckets = [18, 25, 35, 45, 55, 65]; },
  { name = "device"; type = "category"; max_length = 16;
    values = ["mobile", "desktop", "tablet", "tv", "other"]; },
  { name = "last_purchase"; type = "date"; feature = "year"; },
  { name = "birthday"; type = "date"; feature = "age_band"; buckets = [18, 65]; },
  { name = "email_opt_in"; type = "bool"; },
  { name = "ethnicity"; type = "category"; max_length = 32; sensitive = true; k = 10; }
);
purposes = (
  { name = "service"; basis = "opt_out"; essential = true; },
  { name = "ads"; basis = "opt_out"; sale_or_share = true;
    attributes = ["age", "device"]; },
  { name = "research"; basis = "opt_in"; }
);
"""


def config():
    put("config", "dev", DEV_CONFIG)
    put("config", "tls", DEV_CONFIG.replace(
        "insecure_plaintext = true;",
        'tls_cert = "tls/c.pem"; tls_key = "tls/k.pem"; '
        'tls_client_ca = "tls/ca.pem"; tls_require_client_cert = true;'))
    put("config", "minimal", 'schema = ({ name = "a"; type = "string"; });\n'
        'purposes = ({ name = "p"; basis = "opt_in"; });\n')
    put("config", "limits", DEV_CONFIG + "workers = 4; max_streams = 0;\n"
        "map_size_mb = 999999999; shred_epoch_s = 86400;\n"
        'audit_broken = "not_serving";\n')
    put("config", "bad_syntax", "listen = ;\n")
    put("config", "dup_attr", 'schema = ({ name = "a"; type = "string"; },'
        '{ name = "a"; type = "int"; });\npurposes = ({ name = "p"; });\n')
    put("config", "unsorted_buckets", DEV_CONFIG.replace(
        "[18, 25, 35, 45, 55, 65]", "[65, 18]"))
    put("config", "remote_plaintext", DEV_CONFIG.replace("127.0.0.1", "0.0.0.0"))


def policy():
    pepper = fuzz_key(5)
    h = hashlib.blake2b(b"tok-reader-0123456789abcdef", key=pepper,
                        digest_size=32).hexdigest()
    text = """roles = {
  writer = ["/vault.v1.Consumers/PutAttributes", "/vault.v1.Consumers/SetConsent"];
  reader = ["/vault.v1.Consumers/GetAttributes"];
  ml = ["/vault.v1.Features/FetchFeatures", "/vault.v1.Features/GetFeatureSpec"];
  keyadmin = ["/vault.v1.Keys/GetKeyStatus"];
  auditor = ["/vault.v1.Audit/QueryAudit", "/vault.v1.Audit/VerifyAudit"];
};
principals = (
  { name = "dev"; token_hash = "%s"; roles = ["writer", "reader"];
    purposes = ["*"]; },
  { name = "reader"; identity = "reader.example"; roles = ["reader"];
    purposes = ["service", "analytics"]; },
  { name = "ml"; identity = "ml"; roles = ["ml"]; purposes = ["training"]; },
  { name = "auditor"; identity = "auditor"; roles = ["auditor"]; }
);
""" % h
    put("policy", "dev", text)
    put("policy", "ml_reads", text.replace('ml = [', 'ml = ["/vault.v1.Consumers/GetAttributes", '))
    put("policy", "unknown_method", text.replace("GetKeyStatus", "GetKeyStatusX"))
    put("policy", "dup_name", text.replace('name = "ml"', 'name = "dev"'))
    put("policy", "bad_hash", text.replace(h, "zz"))
    put("policy", "empty", "roles = {}; principals = ();\n")


# --------------------------------------------------------- schema values

# The attributes of fuzz_schema_value.c, by index.
ATTRS = ["note", "nick", "score", "age", "born", "birthday", "city", "colour",
         "member"]


def schema_value():
    def v(attr, value, day=20000):
        if isinstance(value, str):
            value = value.encode()
        return bytes([ATTRS.index(attr)]) + struct.pack(">H", day) + value

    seeds = {
        "note": v("note", "free text, ünïcode"),
        "nick_long": v("nick", "x" * 17),
        "score": v("score", "-9223372036854775808"),
        "score_big": v("score", "9223372036854775808"),
        "score_plus": v("score", "+5"),
        "age": v("age", "130"),
        "age_out": v("age", "131"),
        "born": v("born", "1999-12-31"),
        "born_leap": v("born", "2000-02-29"),
        "born_bad": v("born", "1900-02-29"),
        "birthday": v("birthday", "2008-12-02", 20789),
        "city": v("city", "Zürich"),
        "city_ctrl": v("city", "a\tb"),
        "colour": v("colour", "nä"),
        "member": v("member", "true"),
        "member_bad": v("member", "True"),
    }
    for name, data in seeds.items():
        put("schema_value", name, data)


# --------------------------------------------------------------- records

def manifest(entries, key, ref):
    body = b"\x01" + struct.pack(">H", len(entries))
    for name, updated in entries:
        body += bytes([len(name)]) + name + struct.pack(">Q", updated)
    tag = hashlib.blake2b(ref + body, key=key, digest_size=32,
                          person=b"vaultd-manifest").digest()
    return body + tag


def record():
    index_key, ref = fuzz_key(23), fuzz_key(29)
    sealed = 32 + 1 + 4 + 24 + 16
    cons = b"\x02" + struct.pack(">IIQ", 1, 1, 1767225600000) + bytes(2 * sealed)
    put("record", "consumer", b"\x00" + cons)
    put("record", "consumer_v1", b"\x00\x01" + cons[1:])
    put("record", "consumer_short", b"\x00" + cons[:-1])
    attr = b"\x01" + struct.pack(">QQ", 1, 0) + b"\x01" + struct.pack(">I", 1) \
        + bytes(24) + b"value" + bytes(16)
    put("record", "attr", b"\x01" + attr)
    put("record", "attr_short", b"\x01" + attr[:40])
    put("record", "attr_round_trip", b"\x02" + "a@example.com".encode())
    m = manifest([(b"age", 5), (b"email", 6), (b"zip", 7)], index_key, ref)
    put("record", "manifest", b"\x03" + m)
    put("record", "manifest_as_is", b"\x04" + m)
    put("record", "manifest_empty", b"\x03" + manifest([], index_key, ref))
    put("record", "manifest_unsorted", b"\x03" +
        manifest([(b"zip", 1), (b"age", 2)], index_key, ref))
    # A values record: names, times, lengths, then a (made-up) seal of the
    # values, each and a NUL: 3 + 6 bytes plain.
    head = b"\x01" + struct.pack(">H", 2)
    for name, value in ((b"age", b"41"), (b"zip", b"941")):
        head += bytes([len(name)]) + name + struct.pack(">QH", 5, len(value))
    blob = b"\x01" + struct.pack(">I", 1) + bytes(24) + bytes(7) + bytes(16)
    put("record", "values", b"\x05" + head + blob)
    put("record", "values_short", b"\x05" + head + blob[:-1])
    put("record", "values_round_trip", b"\x06" + b"\x03age\x0241"
        b"\x05email\x05a@b.c\x03zip\x00")


if __name__ == "__main__":
    requests()
    pagetoken()
    receipts()
    audit()
    journal()
    wal()
    config()
    policy()
    schema_value()
    record()
