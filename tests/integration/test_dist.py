"""What `cmake --install` puts where (issue 14, points 4 and 5): the
programs, man pages, the systemd unit (checked by systemd-analyze, since
PID 1 may not be systemd here), sysusers, bash completion and examples."""
import os
import pathlib
import re
import shutil
import subprocess

import pytest

from conftest import ROOT, VAULTD

BUILD = pathlib.Path(VAULTD).resolve().parent


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    p = tmp_path_factory.mktemp("install") / "usr"
    r = subprocess.run(["cmake", "--install", str(BUILD), "--prefix", str(p)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return p


INSTALLED = [
    "sbin/vaultd", "bin/vaultctl",
    "share/man/man8/vaultd.8", "share/man/man5/vaultd.conf.5",
    "share/man/man1/vaultctl.1",
    "lib/systemd/system/vaultd.service", "lib/sysusers.d/vaultd.conf",
    "share/bash-completion/completions/vaultctl",
    "share/doc/vaultd/examples/vaultd.conf.example",
    "share/doc/vaultd/examples/policy.conf.example",
]


@pytest.mark.parametrize("rel", INSTALLED)
def test_installed_in_its_place(prefix, rel):
    assert (prefix / rel).is_file(), rel


def test_installed_programs_say_their_version(prefix):
    for prog in ("sbin/vaultd", "bin/vaultctl"):
        r = subprocess.run([str(prefix / prog), "--version"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert re.match(r"^vault(d|ctl) \d+\.\d+\.\d+", r.stdout), r.stdout


def test_unit_points_at_the_installed_daemon(prefix):
    unit = (prefix / "lib/systemd/system/vaultd.service").read_text()
    assert f"ExecStart={prefix}/sbin/vaultd --config " in unit
    assert "@" not in unit.split("[Service]")[1].split("\n")[2], unit
    assert "Type=notify" in unit and "WatchdogSec=" in unit


def test_unit_verifies(prefix):
    """systemd-analyze also runs `man` on each Documentation= page: with
    MANPATH at the installed pages, that checks they were installed."""
    unit = prefix / "lib/systemd/system/vaultd.service"
    r = subprocess.run(["systemd-analyze", "verify", str(unit)],
                       capture_output=True, text=True, timeout=60,
                       env={**os.environ, "MANPATH": str(prefix / "share/man")})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "vaultd.service" not in r.stderr, r.stderr


def test_unit_security_score_is_ok_or_better(prefix):
    unit = prefix / "lib/systemd/system/vaultd.service"
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes",
                        str(unit)], capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for vaultd.service: "
                  r"([0-9.]+) (\w+)", r.stdout)
    assert m, r.stdout + r.stderr
    print(f"systemd-analyze security: {m.group(1)} {m.group(2)}")
    assert m.group(2) in ("OK", "SAFE"), r.stdout
    assert float(m.group(1)) < 2.0


@pytest.mark.parametrize("page", ["vaultd.8", "vaultd.conf.5", "vaultctl.1"])
def test_man_page_renders_without_warnings(prefix, page):
    sect = page.rsplit(".", 1)[1]
    path = prefix / f"share/man/man{sect}" / page
    r = subprocess.run(["groff", "-man", "-ww", "-z", str(path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr == "", r.stderr


def settings_table():
    src = (ROOT / "daemon/conf/config.c").read_text()
    names = re.findall(r'^\s*\{ "([a-z_]+)", SET_', src, re.M)
    assert len(names) > 40
    return names


def test_man_page_settings_match_the_docs():
    r = subprocess.run([str(ROOT / "scripts/man-settings"), "--check"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_every_setting_is_documented():
    page = (ROOT / "dist/man/vaultd.conf.5").read_text()
    md = (ROOT / "docs/config.md").read_text()
    for name in settings_table():
        assert re.search(rf"^\.B {name}\b", page, re.M) or \
            re.search(rf"^\.B .*\b{name}\b", page, re.M), \
            f"{name} missing from vaultd.conf.5"
        assert f"`{name}`" in md, f"{name} missing from docs/config.md"


def test_example_config_checks(tmp_path, prefix):
    """The installed example passes --check-config once its paths exist."""
    ex = prefix / "share/doc/vaultd/examples"
    etc, var = tmp_path / "etc", tmp_path / "var"
    (etc / "tls").mkdir(parents=True)
    (var / "keys").mkdir(parents=True, mode=0o700)
    conf = ex.joinpath("vaultd.conf.example").read_text() \
        .replace("/etc/vaultd", str(etc)).replace("/var/lib/vaultd", str(var))
    (etc / "vaultd.conf").write_text(conf)
    shutil.copy(ex / "policy.conf.example", etc / "policy.conf")
    subprocess.run([VAULTD, "--gen-key", str(var / "keys/token-pepper")],
                   check=True, capture_output=True, timeout=30)
    r = subprocess.run([VAULTD, "--check-config", str(etc / "vaultd.conf")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "ok (5 attributes, 4 purposes)" in r.stdout
