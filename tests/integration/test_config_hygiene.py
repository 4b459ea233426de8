"""Config hygiene (issue 14, point 10): unknown settings are errors with a
"did you mean", file errors say why, and SIGHUP says which changed settings
it applied and which wait for a restart."""
import os
import signal
import subprocess
import time

from conftest import VAULTD, Daemon


def check_config(path):
    return subprocess.run([VAULTD, "--check-config", str(path)],
                          capture_output=True, text=True, timeout=60)


def dev_files(tmp_path):
    """A --dev data dir with its config and policy written, not running."""
    d = Daemon(tmp_path / "vault")
    d.start()
    assert d.stop() == 0
    return d, d.data_dir / "vaultd.conf", d.data_dir / "policy.conf"


def test_a_misspelled_setting_is_refused_with_a_suggestion(tmp_path):
    _, conf, _ = dev_files(tmp_path)
    assert check_config(conf).returncode == 0
    conf.write_text(conf.read_text() + 'log_levl = "debug";\n')
    r = check_config(conf)
    assert r.returncode == 1, r.stdout
    assert "unknown setting 'log_levl'" in r.stderr
    assert "did you mean 'log_level'?" in r.stderr
    assert str(conf) in r.stderr and "line " in r.stderr


def test_an_unknown_setting_far_from_any_lists_the_known_ones(tmp_path):
    _, conf, _ = dev_files(tmp_path)
    conf.write_text(conf.read_text() + 'zzzzqqqq = 1;\n')
    r = check_config(conf)
    assert r.returncode == 1
    assert "unknown setting 'zzzzqqqq'" in r.stderr
    assert "known: listen, store_dir" in r.stderr


def test_unknown_keys_in_schema_purposes_and_policy(tmp_path):
    _, conf, policy = dev_files(tmp_path)
    good_conf, good_policy = conf.read_text(), policy.read_text()

    conf.write_text(good_conf.replace(
        '{ name = "email"; type = "string";',
        '{ name = "email"; type = "string"; sensitve = true;'))
    r = check_config(conf)
    assert r.returncode == 1
    assert "unknown setting 'sensitve' in attribute 'email'" in r.stderr
    assert "did you mean 'sensitive'?" in r.stderr

    conf.write_text(good_conf.replace(
        '{ name = "research"; basis = "opt_in"; }',
        '{ name = "research"; basis = "opt_in"; sale_or_shar = true; }'))
    r = check_config(conf)
    assert r.returncode == 1
    assert "unknown setting 'sale_or_shar' in purpose 'research'" in r.stderr
    assert "did you mean 'sale_or_share'?" in r.stderr

    conf.write_text(good_conf)
    policy.write_text(good_policy.replace(
        '{ name = "writer"; identity = "writer";',
        '{ name = "writer"; identiy = "writer";'))
    r = check_config(conf)
    assert r.returncode == 1
    assert str(policy) in r.stderr
    assert "unknown setting 'identiy' in principal 'writer'" in r.stderr
    assert "did you mean 'identity'?" in r.stderr

    policy.write_text(good_policy + "principles = ();\n")
    r = check_config(conf)
    assert r.returncode == 1
    assert "unknown setting 'principles'" in r.stderr
    assert "did you mean 'principals'?" in r.stderr


def test_a_start_with_an_unknown_setting_is_refused_and_writes_nothing(tmp_path):
    d, conf, _ = dev_files(tmp_path)
    conf.write_text(conf.read_text() + 'workres = 4;\n')
    before = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns)
                    for p in (d.data_dir / "db").iterdir())
    r = subprocess.run([VAULTD, "--config", str(conf)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1
    assert "unknown setting 'workres'" in r.stderr
    assert "did you mean 'workers'?" in r.stderr
    after = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns)
                   for p in (d.data_dir / "db").iterdir())
    assert before == after


def test_file_errors_say_why(tmp_path):
    r = check_config(tmp_path / "missing.conf")
    assert r.returncode == 1
    assert "missing.conf: cannot read the file: No such file or directory" \
        in r.stderr
    r = check_config(tmp_path)
    assert r.returncode == 1
    assert "cannot read the file: not a regular file" in r.stderr
    _, conf, policy = dev_files(tmp_path)
    os.unlink(policy)
    r = check_config(conf)
    assert r.returncode == 1
    assert "policy.conf: cannot read the file: No such file or directory" \
        in r.stderr


def wait_log(d, text, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in d.log():
            return
        time.sleep(0.05)
    raise AssertionError(f"no {text!r} in the log:\n" + d.log())


def test_sighup_names_what_it_applied_and_what_needs_a_restart(tmp_path):
    d, conf, _ = dev_files(tmp_path)
    d.start()
    try:
        d.proc.send_signal(signal.SIGHUP)
        wait_log(d, "SIGHUP: no setting changed")
        text = conf.read_text()
        text = text.replace('log_level = "info";', 'log_level = "debug";')
        text = text.replace('{ name = "research"; basis = "opt_in"; }',
                            '{ name = "research"; basis = "opt_out"; }')
        conf.write_text(text + "workers = 7;\n")
        d.proc.send_signal(signal.SIGHUP)
        wait_log(d, "SIGHUP: applied: log_level")
        wait_log(d, "applied only at the next restart: workers, purposes")
        # Still serving, and the purpose change is not live.
        assert d.put("alice", age="34") is not None
        # A file that no longer loads: everything keeps its running value.
        conf.write_text(text + "workers = 7;\nlog_levl = 1;\n")
        d.proc.send_signal(signal.SIGHUP)
        wait_log(d, "SIGHUP: the config file was not read again")
        assert "unknown setting 'log_levl'" in d.log()
        assert d.put("bob", age="40") is not None
    finally:
        assert d.stop() == 0
