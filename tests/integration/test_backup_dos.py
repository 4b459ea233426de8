"""Denial of service through the Backup stream (issue 14, point 7): the
copy holds an LMDB read snapshot for as long as its stream lasts, so a
backup client that stops reading must not hold it forever, and backups do
not run side by side."""
import time

import grpc
import pytest

from test_backup import admin, consumer_id

# These tests read or damage LMDB's own files, or use its tools.
pytestmark = pytest.mark.lmdb_only


def load(d, n=6000):
    """Some megabytes of store: more than the transport buffers, so a
    client that reads nothing stalls the copy."""
    d.put_many((consumer_id(i), {"email": f"{i:06d}" + "z" * 240})
               for i in range(n))


# A client that reads nothing must stall the copy: without BDP probing its
# window stays at 64 KiB. With probing it could grow past the whole store
# under load, the copy then ends without a stall (a CI run waited 120 s
# for the stall's log line, as test_availability's capped streams once did).
NO_WINDOW_GROWTH = [("grpc.http2.bdp_probe", 0)]


def wait_for(pred, what, tries=1200):
    for _ in range(tries):
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"never happened: {what}")


def test_a_backup_whose_client_reads_nothing_is_ended(fresh):
    d = fresh.start()
    load(d)
    assert d.stop() == 0
    conf = d.data_dir / "vaultd.conf"
    conf.write_text(conf.read_text() + "backup_stall_s = 1;\n")
    d.start()
    with d.channel(options=NO_WINDOW_GROWTH) as ch:
        call = d.stream(ch, "/vault.v1.Admin/Backup", admin.BackupRequest(),
                        admin.BackupChunk, timeout=3600)
        assert next(call).data          # it runs; now read nothing more
        wait_for(lambda: "backup stopped: its client read nothing" in d.log(),
                 "the stalled backup ended by the daemon")
        with pytest.raises(grpc.RpcError) as e:
            for _ in call:
                pass
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "read nothing" in e.value.details()
    out = d.ctl("backup", "--out", str(d.data_dir.parent / "after.backup"))
    assert out.returncode == 0, out.stderr


def test_backups_run_one_at_a_time(fresh, tmp_path):
    d = fresh.start()
    load(d)
    with d.channel(options=NO_WINDOW_GROWTH) as ch:
        call = d.stream(ch, "/vault.v1.Admin/Backup", admin.BackupRequest(),
                        admin.BackupChunk, timeout=3600)
        assert next(call).data          # the first holds its snapshot
        out = d.ctl("backup", "--out", str(tmp_path / "second"))
        assert out.returncode != 0
        assert "a backup is already running" in out.stderr, out.stderr
        assert not (tmp_path / "second").exists()
        call.cancel()

    def third():
        out = d.ctl("backup", "--out", str(tmp_path / "third"))
        assert out.returncode == 0 or "already running" in out.stderr, \
            out.stderr
        return out.returncode == 0
    wait_for(third, "a backup once the first was cancelled", tries=100)
