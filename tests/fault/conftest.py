"""Fault-injection tests: the integration fixtures, on the binary under test.

VAULTD_CRASH names a vaultd built with the named crash points
(scripts/build --crash); when set, every test here runs that binary (without
VAULT_CRASH_AT it behaves as any build). The integration conftest is loaded
by path under its own name, since this file is "conftest" too.
"""
import importlib.util
import os
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
INTEGRATION = HERE.parent / "integration"
sys.path.insert(0, str(INTEGRATION))
sys.path.insert(0, str(HERE))

if os.environ.get("VAULTD_CRASH"):
    os.environ["VAULTD"] = os.environ["VAULTD_CRASH"]

_spec = importlib.util.spec_from_file_location("vault_integration_conftest",
                                               INTEGRATION / "conftest.py")
_it = importlib.util.module_from_spec(_spec)
sys.modules["vault_integration_conftest"] = _it
_spec.loader.exec_module(_it)

# Re-exported: the fixtures for pytest, the helpers for the tests.
ROOT, VAULTD, VAULTCTL = _it.ROOT, _it.VAULTD, _it.VAULTCTL
pb, health_pb, Daemon, running = _it.pb, _it.health_pb, _it.Daemon, _it.running
free_port = _it.free_port
daemon, fresh = _it.daemon, _it.fresh
