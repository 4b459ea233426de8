"""vaultctl against a real daemon: output, --json, and exit codes."""
import json
import os
import subprocess

from conftest import VAULTCTL, free_port


def test_put_get_delete_plain_and_json(daemon):
    r = daemon.ctl("health")
    assert r.returncode == 0 and r.stdout.strip() == "SERVING"
    r = daemon.ctl("put", "nina@example.com", "email=nina@example.com",
                   "age=29", "device=tablet")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok consumer_ref=") and "created" in r.stdout
    r = daemon.ctl("get", "nina@example.com", "age", "device")
    assert r.returncode == 0
    assert r.stdout.splitlines() == ["age=29", "device=tablet"]
    r = daemon.ctl("get", "nina@example.com", "--purpose", "service", json=True)
    doc = json.loads(r.stdout)
    assert doc["attributes"] == {"email": "nina@example.com", "age": "29",
                                 "device": "tablet"}
    assert len(doc["consumer_ref"]) == 64
    r = daemon.ctl("delete", "nina@example.com", "--request-id", "dsr-42",
                   json=True)
    doc = json.loads(r.stdout)
    assert r.returncode == 0
    assert doc["request_id"] == "dsr-42" and doc["found"] is True
    r = daemon.ctl("get", "nina@example.com")
    assert r.returncode == 3 and "NOT_FOUND" in r.stderr
    # The python client sees what vaultctl wrote, and the reverse.
    daemon.put("omar", zip="10001")
    assert daemon.ctl("get", "omar").stdout.strip() == "zip=10001"


def test_exit_codes(daemon):
    r = daemon.ctl("put", "pia", "age=old")
    assert r.returncode == 4 and "INVALID_ARGUMENT" in r.stderr
    assert "old" not in r.stderr
    r = daemon.ctl("put", "pia", "age=old", json=True)
    assert json.loads(r.stdout)["error"]["code"] == "INVALID_ARGUMENT"
    r = daemon.ctl("get", "pia", token_file=False)
    assert r.returncode == 5 and "UNAUTHENTICATED" in r.stderr
    r = daemon.ctl("put", "pia", "no-equals-sign")
    assert r.returncode == 2
    r = daemon.ctl("frobnicate")
    assert r.returncode == 2
    r = subprocess.run([VAULTCTL, "--addr", f"127.0.0.1:{free_port()}",
                        "--timeout", "2000", "health"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 6 and "UNAVAILABLE" in r.stderr


def test_environment_variables(daemon):
    env = dict(os.environ, VAULT_ADDR=daemon.addr,
               VAULT_TOKEN_FILE=str(daemon.data_dir / "dev-token"))
    r = subprocess.run([VAULTCTL, "put", "quinn", "zip=02139"], env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([VAULTCTL, "get", "quinn"], env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.stdout.strip() == "zip=02139"
