"""The daemon as a process: restarts, concurrency, what reaches the disk,
refusals at start, and graceful shutdown."""
import hashlib
import os
import signal
import threading
import time

import grpc
import pytest

from conftest import Daemon, health_pb, pb, write_canaries


def test_data_survives_restart(daemon):
    daemon.put("kate", email="kate@example.com", income_band="high")
    assert daemon.stop() == 0
    daemon.start()
    assert daemon.get("kate") == {"email": "kate@example.com",
                                  "income_band": "high"}


def test_concurrent_clients_all_writes_readable(daemon):
    errors = []

    def client(n):
        with daemon.channel() as ch:
            for i in range(200):
                cid = f"c{n}-{i}"
                try:
                    daemon.call("/vault.v1.Consumers/PutAttributes",
                                _put_req(cid, n, i), pb.PutAttributesResponse,
                                channel=ch)
                except grpc.RpcError as e:
                    errors.append((cid, e.code(), e.details()))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with daemon.channel() as ch:
        for n in range(8):
            for i in range(200):
                assert daemon.get(f"c{n}-{i}", ["zip"], channel=ch) == \
                    {"zip": f"{n:02d}{i:05d}"}


def _put_req(cid, n, i):
    return pb.PutAttributesRequest(consumer_id=cid, attributes=[
        pb.Attribute(name="zip", value=f"{n:02d}{i:05d}")])


def _all_bytes(root):
    for dirpath, _, files in os.walk(root):
        for f in files:
            with open(os.path.join(dirpath, f), "rb") as fh:
                yield os.path.join(dirpath, f), fh.read()


@pytest.mark.lmdb_only  # scans data.mdb (test_postgresql.py scans PostgreSQL's files)
def test_no_consumer_id_or_value_on_disk_or_in_logs(daemon):
    secrets_written = write_canaries(daemon, 50, extra=("ethnicity",))
    # Reads are audited through the journal files: read them while running.
    live = list(_all_bytes(daemon.data_dir))
    assert any("audit-journal" in p for p, _ in live)
    token = daemon.token
    assert daemon.stop() == 0
    blobs = list(_all_bytes(daemon.data_dir)) + live
    assert any(p.endswith("data.mdb") for p, _ in blobs)
    log = daemon.log().encode()
    for s in secrets_written + [token]:
        needle = s.encode()
        for path, data in blobs:
            if path.endswith("dev-token"):
                continue
            assert needle not in data, f"{s!r} found in {path}"
        assert needle not in log


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.lmdb_only  # hashes data.mdb before and after
def test_wrong_master_key_refused_before_any_write(fresh):
    fresh.start()
    fresh.put("lena", age="44")
    assert fresh.stop() == 0
    key = fresh.data_dir / "keys" / "master-1.key"
    data = fresh.data_dir / "db" / "data.mdb"
    good, before = key.read_bytes(), _sha(data)
    key.write_bytes(os.urandom(32))
    fresh.spawn()
    assert fresh.wait_exit() != 0
    assert "does not match the store's key check value" in fresh.log()
    assert _sha(data) == before
    key.write_bytes(good)
    fresh.start()
    assert fresh.get("lena") == {"age": "44"}


def test_key_file_permissions_refused(fresh):
    fresh.start()
    assert fresh.stop() == 0
    key = fresh.data_dir / "keys" / "master-1.key"
    key.chmod(0o644)
    fresh.spawn()
    assert fresh.wait_exit() != 0
    assert "must be 0600 or stricter" in fresh.log()
    key.chmod(0o600)
    fresh.start()


@pytest.mark.lmdb_only  # damages data.mdb
def test_corrupt_store_refused_with_clear_message(fresh):
    fresh.start()
    fresh.put("mona", age="1")
    assert fresh.stop() == 0
    data = fresh.data_dir / "db" / "data.mdb"
    data.write_bytes(os.urandom(64 << 10))
    fresh.spawn()
    assert fresh.wait_exit() != 0
    assert "not a valid LMDB store" in fresh.log()


def test_plaintext_refused_off_loopback(fresh):
    fresh.spawn(listen=f"0.0.0.0:{fresh.port}")
    assert fresh.wait_exit() != 0
    assert "loopback" in fresh.log()


def test_port_in_use_is_an_error(daemon, tmp_path):
    other = Daemon(tmp_path / "other")
    other.port, other.addr = daemon.port, daemon.addr
    other.spawn()
    assert other.wait_exit() != 0
    assert "cannot listen" in other.log()


def test_graceful_shutdown_ends_streams(daemon):
    got = []

    def watch():
        with daemon.channel() as ch:
            try:
                for msg in daemon.stream(ch, "/grpc.health.v1.Health/Watch",
                                         health_pb.HealthCheckRequest(),
                                         health_pb.HealthCheckResponse,
                                         token=None, timeout=60):
                    got.append(msg.status)
            except grpc.RpcError as e:
                got.append(e.code())

    t = threading.Thread(target=watch)
    t.start()
    deadline = time.monotonic() + 10
    while not got and time.monotonic() < deadline:
        time.sleep(0.02)
    t0 = time.monotonic()
    assert daemon.stop(signal.SIGTERM) == 0
    t.join(10)
    assert not t.is_alive()
    assert got[0] == health_pb.HealthCheckResponse.SERVING
    assert health_pb.HealthCheckResponse.NOT_SERVING in got
    assert time.monotonic() - t0 < 10


def test_check_config_and_gen_key(fresh, tmp_path):
    import subprocess
    from conftest import VAULTD
    fresh.start()
    assert fresh.stop() == 0
    conf = fresh.data_dir / "vaultd.conf"
    ok = subprocess.run([VAULTD, "--check-config", str(conf)],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and "ok (10 attributes, 5 purposes)" in ok.stdout
    broken = tmp_path / "broken.conf"
    broken.write_text(conf.read_text().replace('type = "int"', 'type = "integer"', 1))
    bad = subprocess.run([VAULTD, "--check-config", str(broken)],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "needs a type" in bad.stderr
    key = tmp_path / "master-9.key"
    assert subprocess.run([VAULTD, "--gen-key", str(key)]).returncode == 0
    assert key.stat().st_mode & 0o777 == 0o600 and key.stat().st_size == 32
    assert subprocess.run([VAULTD, "--gen-key", str(key)],
                          capture_output=True).returncode != 0


def test_production_config_form(fresh):
    """--config runs the same store the dev mode created."""
    import subprocess
    from conftest import VAULTD
    fresh.start()
    fresh.put("rosa", age="61")
    assert fresh.stop() == 0
    log = open(fresh.log_path, "ab")
    proc = subprocess.Popen([VAULTD, "--config", str(fresh.data_dir / "vaultd.conf"),
                             "--listen", fresh.addr], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if fresh.health() == health_pb.HealthCheckResponse.SERVING:
                    break
            except grpc.RpcError:
                time.sleep(0.05)
        assert fresh.get("rosa") == {"age": "61"}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        log.close()
    fresh.assert_sanitizer_clean()
