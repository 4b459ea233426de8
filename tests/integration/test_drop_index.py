"""The DROP matching index (issue 18, point 1): attributes marked
drop_identifier are indexed by a keyed hash of their DROP form, never by
the SHA-256 the DROP lists carry; consumers written before are indexed by
the janitor. (Matching a list against it, ProcessDropList, is not built
yet.)"""
import base64
import hashlib
import re
import time

from conftest import pb


def with_drop_identifiers(d, extra=""):
    conf = d.data_dir / "vaultd.conf"
    text, n = re.subn(r'(\{ name = "email"; type = "string";)',
                      r'\1 drop_identifier = "email";', conf.read_text())
    assert n == 1
    conf.write_text(text + "\njanitor_interval_ms = 200;\n" + extra)


def drop_forms(value):
    h = hashlib.sha256(value.encode()).digest()
    return [h, base64.b64encode(h), h.hex().encode()]


def raw_files(d):
    for f in (d.data_dir / "db").rglob("*"):
        if f.is_file():
            yield f.read_bytes()


def test_the_store_holds_no_bare_drop_hash(fresh):
    fresh.start()
    fresh.put("early@example.test", email="Early@Example.test")
    assert fresh.stop() == 0
    with_drop_identifiers(fresh)
    fresh.start()
    for i in range(20):
        fresh.put(f"d{i}@example.test", email=f"D{i}@Example.test ")
    deadline = time.monotonic() + 30
    while "the DROP index is built" not in fresh.log():
        assert time.monotonic() < deadline, fresh.log()
        time.sleep(0.1)
    assert fresh.stop() == 0
    data = b"".join(raw_files(fresh))
    for v in ["early@example.test"] + [f"d{i}@example.test" for i in range(20)]:
        for form in drop_forms(v):
            assert form not in data, v
    assert "@example.test" not in fresh.log()


def test_drop_identifier_errors(fresh):
    fresh.start()
    assert fresh.stop() == 0
    conf = fresh.data_dir / "vaultd.conf"
    base = conf.read_text()
    conf.write_text(base.replace('{ name = "email"; type = "string";',
                                 '{ name = "email"; type = "string"; '
                                 'drop_identifier = "ssn";'))
    fresh.spawn()
    assert fresh.wait_exit() != 0
    assert "attribute 'email': drop_identifier must be one of email" in \
        fresh.log()
    conf.write_text(base.replace(
        '{ name = "email"; type = "string";',
        '{ name = "email"; type = "string"; drop_identifier = "zip";').replace(
        '{ name = "zip"; type = "string";',
        '{ name = "zip"; type = "string"; drop_identifier = "zip";'))
    fresh.spawn()
    assert fresh.wait_exit() != 0
    assert ("attribute 'zip': another attribute is drop_identifier \"zip\""
            in fresh.log()), fresh.log()
