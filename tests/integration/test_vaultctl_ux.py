"""vaultctl for people (issue 14, point 11 and the CLI of point 5), run as
a person or a script would run it, against a real daemon: help, version,
global flags anywhere, "did you mean", audit query times, method names and
limits, delete --from-file in batches with idempotent retries, keys destroy
confirmation, and errors that name their cause (TLS, key file mode, the
certificate identity seen)."""
import datetime
import json
import os
import pty
import re
import subprocess

from conftest import VAULTCTL, Daemon, free_port


def run(*args, stdin=subprocess.DEVNULL, timeout=120):
    return subprocess.run([VAULTCTL, *args], capture_output=True, text=True,
                          stdin=stdin, timeout=timeout)


def commands():
    """The command table, as `vaultctl --help` lists it."""
    out = run("--help")
    assert out.returncode == 0
    section = out.stdout.split("commands:\n")[1].split("global options")[0]
    names = [line.split()[0] for line in section.splitlines()
             if line.startswith("  ") and not line.startswith("   ")]
    return [n for n in names if n not in ("help", "version")]


def test_version_and_help_for_every_command():
    r = run("--version")
    assert r.returncode == 0 and re.fullmatch(r"vaultctl \d+\.\d+\.\d+\n", r.stdout)
    assert run("version").stdout == r.stdout
    names = commands()
    assert {"health", "put", "get", "delete", "audit", "keys", "features",
            "consent", "export", "receipt", "watch-deletions",
            "watch-consent"} <= set(names)
    for name in names:
        h = run(name, "--help")
        assert h.returncode == 0, (name, h.stderr)
        assert h.stdout.startswith("usage: vaultctl"), name
        assert "global options" in h.stdout and "exit codes" in h.stdout, name
        assert "example:" in h.stdout, name
        assert run("help", name).stdout == h.stdout, name
        # -h, and --help before the command, say the same.
        assert run("-h", name).stdout == h.stdout, name
    r = run("help", "halth")
    assert r.returncode == 2 and "did you mean 'health'" in r.stderr


def test_mistyped_command_gets_a_suggestion():
    r = run("halth")
    assert r.returncode == 2
    assert "unknown command 'halth'; did you mean 'health'?" in r.stderr
    assert "commands: health put get delete" in r.stderr
    r = run("zzzzzzzz")
    assert r.returncode == 2 and "did you mean" not in r.stderr
    assert "commands:" in r.stderr
    r = run("--bogus", "health")
    assert r.returncode == 2 and "unknown option '--bogus'" in r.stderr
    # A mistyped option of a command, too (nothing is sent: no server here).
    r = run("get", "x", "--purpse", "service", "--addr", f"127.0.0.1:{free_port()}")
    assert r.returncode == 2
    assert "get: unknown option '--purpse'; did you mean '--purpose'?" in r.stderr
    r = run("audit", "query", "--since")
    assert r.returncode == 2 and "--since needs a value" in r.stderr


def test_global_flags_anywhere_on_the_line(daemon):
    tok = str(daemon.data_dir / "dev-token")
    r = run("put", "gus", "age=33", "--addr", daemon.addr, "--token-file", tok)
    assert r.returncode == 0, r.stderr
    r = run("get", "--addr", daemon.addr, "gus", f"--token-file={tok}", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["attributes"] == {"age": "33"}
    r = run("--json", "get", "gus", "--addr", daemon.addr, "--token-file", tok,
            "--timeout", "5000", "--purpose", "service")
    assert json.loads(r.stdout)["attributes"] == {"age": "33"}
    r = run("get", "gus", "--addr", daemon.addr, "--timeout", "soon")
    assert r.returncode == 2 and "--timeout" in r.stderr
    # After "--", words are the command's, even one that looks like a flag.
    r = run("--addr", daemon.addr, "--token-file", tok, "put", "--", "--json",
            "age=5")
    assert r.returncode == 0, r.stderr
    assert daemon.get("--json") == {"age": "5"}


def test_mistyped_purpose_and_attribute_get_a_suggestion(daemon):
    daemon.put("hana@example.com", email="hana@example.com")
    r = daemon.ctl("put", "hana@example.com", "emial=secret-value-1")
    assert r.returncode == 4
    assert "unknown attribute; did you mean 'email'?" in r.stderr
    assert "the schema has: email, zip, age" in r.stderr
    for secret in ("secret-value-1", "hana", "emial"):
        assert secret not in r.stderr
    r = daemon.ctl("get", "hana@example.com", "emal")
    assert r.returncode == 4 and "names[0]: unknown attribute; did you mean " \
        "'email'?" in r.stderr
    r = daemon.ctl("get", "hana@example.com", "--purpose", "servce")
    assert r.returncode == 4
    assert "purpose: unknown purpose; did you mean 'service'?" in r.stderr
    assert "service, training" in r.stderr and "hana" not in r.stderr
    r = daemon.ctl("get", "hana@example.com", "--purpose", "qqqqqqqqqq")
    assert "unknown purpose (the schema has: service" in r.stderr
    r = daemon.ctl("consent", "hana@example.com", "--purpose", "trainig", "--grant")
    assert r.returncode == 4 and "did you mean 'training'?" in r.stderr
    r = daemon.ctl("features", "--purpose", "training", "--dataset", "ds",
                   "--attributes", "agee")
    assert r.returncode == 4 and "attributes[0]: unknown attribute; did you " \
        "mean 'age'?" in r.stderr


def audit_lines(daemon, *args):
    r = daemon.ctl("audit", "query", *args)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()], r.stderr


def rfc3339(ms, offset_minutes):
    tz = datetime.timezone(datetime.timedelta(minutes=offset_minutes))
    t = datetime.datetime.fromtimestamp(ms / 1000, tz)
    return t.isoformat(timespec="milliseconds")


def test_audit_query_dates_and_relative_times(daemon):
    daemon.put("ivo", age="40")
    entries, _ = audit_lines(daemon)
    assert entries
    at = entries[-1]["at_ms"]
    # The same instant in three offsets: since is inclusive, until exclusive.
    for off in (0, 120, -330):
        got, _ = audit_lines(daemon, "--since", rfc3339(at, off))
        assert got and got[-1]["seq"] == entries[-1]["seq"]
        assert all(e["at_ms"] >= at for e in got)
        got, _ = audit_lines(daemon, "--since", rfc3339(at + 1, off))
        assert all(e["at_ms"] > at for e in got)
        got, _ = audit_lines(daemon, "--until", rfc3339(at, off))
        assert all(e["at_ms"] < at for e in got)
    z = datetime.datetime.fromtimestamp(at // 1000, datetime.timezone.utc)
    assert audit_lines(daemon, "--since", z.strftime("%Y-%m-%dT%H:%M:%SZ"))[0]
    today = z.strftime("%Y-%m-%d")
    assert audit_lines(daemon, "--since", today)[0]
    tomorrow = (z + datetime.timedelta(days=1)).strftime("%Y-%m-%d")
    assert audit_lines(daemon, "--since", tomorrow)[0] == []
    assert audit_lines(daemon, "--until", "2000-01-01")[0] == []
    for rel in ("24h", "30m", "7d", "3600s", "1w"):
        assert audit_lines(daemon, "--since", rel)[0], rel
    assert audit_lines(daemon, "--until", "24h")[0] == []
    assert audit_lines(daemon, "--since", str(at))[0]   # epoch ms still work
    for bad in ("2026-12-1", "2026-13-01", "2026-02-30", "2026-12-01T25:00Z",
                "2026-12-01T10:00:00", "2026-12-01T10:00+2", "yesterday",
                "24x", "h", "-5m", "2026-12-01T10:00:00.Z", ""):
        r = daemon.ctl("audit", "query", "--since", bad)
        assert r.returncode == 2, bad
        assert r.stdout == "" and "is not a time" in r.stderr, bad
    r = daemon.ctl("audit", "query", "--since", "1h", "--until", "2h")
    assert r.returncode == 2 and "--until is before --since" in r.stderr


def test_audit_query_short_method_names(daemon):
    daemon.put("jo", age="20")
    assert daemon.ctl("keys", "status").returncode == 0
    full = "/vault.v1.Keys/GetKeyStatus"
    for name in ("GetKeyStatus", "Keys/GetKeyStatus", "vault.v1.Keys/GetKeyStatus",
                 full):
        got, _ = audit_lines(daemon, "--method", name)
        assert got and {e["method"] for e in got} == {full}, name
    r = daemon.ctl("audit", "query", "--method", "GetKeyStats")
    assert r.returncode == 2 and r.stdout == ""
    assert "unknown method 'GetKeyStats'; did you mean 'GetKeyStatus'?" in r.stderr
    assert "methods: PutAttributes" in r.stderr
    assert daemon.ctl("audit", "query", "--method", "Keyz/Frob").returncode == 2


def test_audit_query_limit(daemon):
    for i in range(12):
        daemon.put(f"lim{i}", age=str(i))
    everything, _ = audit_lines(daemon, "--limit", "0")
    assert len(everything) >= 12
    got, err = audit_lines(daemon, "--limit", "5")
    assert got == everything[:5] and err == ""
    got, err = audit_lines(daemon)      # under the default limit: no note
    assert got[:len(everything)] == everything and err == ""
    assert daemon.ctl("audit", "query", "--limit", "x").returncode == 2
    # The cancelled stream leaves the daemon serving.
    assert daemon.ctl("get", "lim3").stdout.strip() == "age=3"


def csv_file(path, rows, header=True):
    lines = ["consumer_id,request_id"] if header else []
    lines += [f"{c},{r}" if r is not None else c for c, r in rows]
    path.write_text("\n".join(lines) + "\n")


def test_delete_from_file_batches_and_retries_idempotently(daemon, tmp_path):
    n = 1234
    ids = [f"bulk-{i}@example.com" for i in range(n)]
    for cid in ids[:n - 34]:            # the last 34 were never stored
        daemon.put(cid, age="1")
    rows = [(cid, f"dsr-{i}") for i, cid in enumerate(ids)]
    f = tmp_path / "dsr.csv"
    csv_file(f, rows)
    # A batch bigger than the server's max_delete_batch shrinks to it.
    first = daemon.ctl("delete", "--from-file", str(f), "--batch-size", "5000",
                       json=True)
    assert first.returncode == 0, first.stderr
    assert first.stderr == ""           # stderr is no terminal: no bar
    receipts = [json.loads(x) for x in first.stdout.splitlines()]
    assert [r["request_id"] for r in receipts] == [r for _, r in rows]
    assert [r["found"] for r in receipts] == [True] * (n - 34) + [False] * 34
    # The retry (as after a failure) gives the same receipts, found included.
    again = daemon.ctl("delete", "--from-file", str(f), "--batch-size", "300",
                       json=True)
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout
    receipts_file = tmp_path / "receipts.jsonl"
    receipts_file.write_text(first.stdout)
    assert daemon.ctl("receipt", "verify", str(receipts_file)).returncode == 0
    # Default limit of audit query: a note on stderr when reached.
    got, err = audit_lines(daemon)
    assert len(got) == 1000 and "stopped after 1000 entries" in err
    assert len(audit_lines(daemon, "--limit", "0")[0]) > 1000
    # Plain id lines get fresh request ids on every run.
    plain = tmp_path / "plain.txt"
    plain.write_text(f"{ids[0]}\n\n{ids[1]}\n")
    one = [json.loads(x) for x in daemon.ctl("delete", "--from-file", str(plain),
                                             json=True).stdout.splitlines()]
    two = [json.loads(x) for x in daemon.ctl("delete", "--from-file", str(plain),
                                             json=True).stdout.splitlines()]
    assert len(one) == 2 and {r["request_id"] for r in one}.isdisjoint(
        r["request_id"] for r in two)
    assert [r["found"] for r in one + two] == [False] * 4


def test_delete_from_file_bad_line_deletes_nothing(daemon, tmp_path):
    daemon.put("kim@example.com", age="3")
    f = tmp_path / "bad.csv"
    f.write_text("kim@example.com,req-1\nlee@example.com,req-2\n"
                 "private-person@example.com,\n")
    r = daemon.ctl("delete", "--from-file", str(f))
    assert r.returncode == 2 and r.stdout == ""
    assert f"{f} line 3 has an empty request id" in r.stderr
    assert "private-person" not in r.stderr and "kim" not in r.stderr
    f.write_text("kim@example.com,req 1\n")
    r = daemon.ctl("delete", "--from-file", str(f))
    assert r.returncode == 2 and "line 1 has a request id that is not printable" \
        in r.stderr
    assert daemon.get("kim@example.com") == {"age": "3"}
    r = daemon.ctl("delete", "--from-file", str(tmp_path / "missing.csv"))
    assert r.returncode == 2 and "No such file or directory" in r.stderr


def test_delete_from_file_failed_batch_says_how_far_it_got(daemon, tmp_path):
    daemon.put("taken@example.com", age="9")
    assert daemon.ctl("delete", "taken@example.com", "--request-id",
                      "used-id").returncode == 0
    rows = [(f"far-{i}", f"far-req-{i}") for i in range(1500)]
    rows[1200] = ("someone-else@example.com", "used-id")   # refused by the server
    f = tmp_path / "far.csv"
    csv_file(f, rows, header=False)
    r = daemon.ctl("delete", "--from-file", str(f), json=True)
    assert r.returncode == 1, r.stderr
    assert len(r.stdout.splitlines()) - 1 == 1000       # + the error object
    assert "the server refused line 1201 of" in r.stderr
    assert "the batch of lines 1001 to 1500" in r.stderr
    assert "the 1000 consumers before line 1001 are deleted" in r.stderr
    assert f"tail -n +1001 {f}" in r.stderr
    assert "someone-else" not in r.stderr


def test_keys_destroy_asks_first(daemon):
    assert daemon.ctl("keys", "rotate").returncode == 0
    # No terminal and no --yes: refused, nothing destroyed.
    r = daemon.ctl("keys", "destroy", "1")
    assert r.returncode == 2 and "--yes" in r.stderr
    status = json.loads(daemon.ctl("keys", "status", json=True).stdout)
    assert {v["version"]: v["state"] for v in status["versions"]}[1] != "destroyed"
    assert daemon.ctl("keys", "destroy", "1", "--no").returncode == 2
    # On a terminal: the wrong answer destroys nothing; the version does.
    tok = str(daemon.data_dir / "dev-token")

    def on_terminal(answer):
        master, slave = pty.openpty()
        os.write(master, answer.encode() + b"\n")
        r = subprocess.run([VAULTCTL, "--addr", daemon.addr, "--token-file", tok,
                            "keys", "destroy", "1"], stdin=slave,
                           capture_output=True, text=True, timeout=60)
        os.close(master)
        os.close(slave)
        return r

    r = on_terminal("yes")
    assert r.returncode == 2 and "Type the version (1)" in r.stderr
    assert "nothing was destroyed" in r.stderr
    r = on_terminal("1")
    assert r.returncode == 0 and "master key version 1 destroyed" in r.stdout, r.stderr
    status = json.loads(daemon.ctl("keys", "status", json=True).stdout)
    assert {v["version"]: v["state"] for v in status["versions"]}[1] == "destroyed"


def tls_ctl(d, *args, cert=True, role="reader"):
    t = d.data_dir / "tls"
    cmd = ["--addr", f"localhost:{d.port}", "--ca", str(t / "ca.pem")]
    if cert:
        cmd += ["--cert", str(t / f"{role}.pem"), "--key", str(t / f"{role}.key")]
    return run(*cmd, *args)


def test_tls_errors_name_their_cause(tls_daemon, tmp_path):
    from test_security import dev_ca, make_cert
    d = tls_daemon
    r = tls_ctl(d, "get", "x", cert=False)
    assert r.returncode == 6
    assert "it requires a client certificate (--cert/--key" in r.stderr
    r = run("--addr", f"localhost:{d.port}", "health")
    assert r.returncode == 6 and "if it serves TLS, give --ca" in r.stderr
    ca_key, ca_cert = dev_ca(d)
    c, k = make_cert(d, tmp_path, "stranger", ca_key, ca_cert)
    r = run("--addr", f"localhost:{d.port}", "--ca", str(d.data_dir / "tls/ca.pem"),
            "--cert", str(c), "--key", str(k), "get", "x")
    assert r.returncode == 5
    assert "client certificate identity 'stranger' is not in the policy" in r.stderr
    token = tmp_path / "token"
    token.write_text("wrong-token-never-shown\n")
    r = run("--addr", f"localhost:{d.port}", "--ca", str(d.data_dir / "tls/ca.pem"),
            "--cert", str(c), "--key", str(k), "--token-file", str(token), "get", "x")
    assert r.returncode == 5 and "bearer token matches no principal" in r.stderr
    assert "wrong-token" not in r.stderr
    r = tls_ctl(d, "keys", "status", role="ml")
    assert r.returncode == 5 and "principal 'ml' has no role" in r.stderr


def test_server_key_mode_is_named_at_start(tmp_path):
    d = Daemon(tmp_path / "vault", tls=True)
    d.start()
    assert d.stop() == 0
    key = d.data_dir / "tls" / "server.key"
    key.chmod(0o644)
    d.spawn()
    assert d.wait_exit() != 0
    log = d.log()
    assert f"TLS private key {key} has mode 0644; it must be 0600 or stricter" in log
    assert "unusable TLS files, see above" in log
    key.chmod(0o600)
    (d.data_dir / "tls" / "ca.pem").rename(d.data_dir / "tls" / "ca.moved")
    d.spawn()
    assert d.wait_exit() != 0
    assert f"cannot read {d.data_dir / 'tls' / 'ca.pem'}: No such file or directory" \
        in d.log()


COMPLETION = os.path.join(os.path.dirname(__file__), "..", "..", "dist",
                          "bash-completion", "vaultctl")
# What bash-completion's library provides, reduced to what the script uses.
COMPLETION_STUBS = r'''
_init_completion() { words=("${COMP_WORDS[@]}"); cword=$COMP_CWORD;
  cur=${COMP_WORDS[COMP_CWORD]}; prev=${COMP_WORDS[COMP_CWORD-1]}; }
_filedir() { COMPREPLY=(FILES); }
'''


def complete(*words):
    """What the completion offers after `vaultctl WORDS...` (the last being
    the word under the cursor)."""
    script = COMPLETION_STUBS + open(COMPLETION).read() + \
        '\nCOMP_WORDS=(vaultctl "$@"); COMP_CWORD=$#; _vaultctl; ' \
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    r = subprocess.run(["bash", "-c", script, "complete", *words],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return set(r.stdout.split())


def test_bash_completion_knows_every_command_and_option():
    names = commands()
    assert complete("") == set(names) | {"help", "version"}
    assert complete("--json", "ge") == {"get"}
    assert complete("--addr", "h:1", "ke") == {"keys"}
    assert complete("keys", "") == {"status", "rotate", "destroy", "rekey"}
    assert complete("delete", "--from-file", "x") == {"FILES"}
    assert "--yes" in complete("keys", "destroy", "-")
    assert complete("features", "--format", "") == {"csv", "jsonl"}
    assert "GetKeyStatus" in complete("audit", "query", "--method", "")
    globals_ = {"--addr", "--token-file", "--ca", "--cert", "--key", "--json",
                "--timeout", "--help", "--version"}
    assert complete("-") == globals_
    # Every option a command's help names, the completion offers.
    for name in names:
        text = run(name, "--help").stdout.split("global options")[0]
        wanted = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", text)) - {"--help"}
        words = [name]
        if name in ("audit", "keys", "receipt", "drop"):
            sub = {"audit": "query", "keys": "destroy", "receipt": "verify",
                   "drop": "process"}[name]
            words.append(sub)
            if name == "keys":
                wanted = {"--yes"}
            if name == "receipt":
                wanted = {"--public-key"}
            if name == "audit":
                assert complete("audit", "report", "--") >= {
                    "--since", "--until", "--factor"} | globals_
                wanted -= {"--factor"}
        offered = complete(*words, "--")
        assert wanted <= offered, (name, wanted - offered)
        assert globals_ <= offered, name


def test_delete_progress_bar_only_on_a_terminal(daemon, tmp_path):
    f = tmp_path / "bar.csv"
    csv_file(f, [(f"bar-{i}", f"bar-req-{i}") for i in range(25)])
    master, slave = pty.openpty()
    tok = str(daemon.data_dir / "dev-token")
    r = subprocess.run([VAULTCTL, "--addr", daemon.addr, "--token-file", tok,
                        "delete", "--from-file", str(f), "--batch-size", "10"],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=slave, timeout=60)
    os.close(slave)
    shown = b""
    try:
        while True:
            chunk = os.read(master, 4096)
            if not chunk:
                break
            shown += chunk
    except OSError:         # EIO: the terminal's other end is closed
        pass
    os.close(master)
    assert r.returncode == 0
    assert len(r.stdout.splitlines()) == 25
    text = shown.decode()
    assert "\rdeleting [" in text and "10/25" in text and "25/25" in text
    assert "bar-" not in text       # no consumer id on the terminal either
