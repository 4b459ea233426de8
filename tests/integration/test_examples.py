"""The examples/ demo, on small data: load synthetic consumers, stream
features, train, and get a model better than chance."""
import os
import re
import subprocess

from conftest import ROOT, VAULTCTL, VAULTD


def test_demo_trains_a_useful_model():
    env = dict(os.environ, VAULTD=VAULTD, VAULTCTL=VAULTCTL)
    r = subprocess.run([str(ROOT / "examples" / "demo.sh"), "800"], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "loaded 800 consumers" in r.stdout
    m = re.search(r"streamed (\d+) rows .* ROC AUC ([0-9.]+)", r.stdout)
    assert m, r.stdout
    # About 5% opt out of training: they are not streamed.
    assert 700 <= int(m.group(1)) < 800
    assert float(m.group(2)) > 0.65
    for mark in ("AddressSanitizer", "runtime error:"):
        assert mark not in r.stderr
