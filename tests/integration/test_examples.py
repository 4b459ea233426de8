"""The examples/ demo on the Python package, on small data: load synthetic
consumers, stream features, train (sklearn, then PyTorch with two workers),
get a model better than chance, and purge deleted consumers from the saved
training set."""
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
    # Features named by their labels, not by opaque tokens.
    assert re.search(r"strongest features: \w+_", r.stdout), r.stdout
    # PyTorch with two workers, each its own shard: every row once.
    m2 = re.search(r"workers 2 \(fork\): trained on (\d+) rows", r.stdout)
    assert m2 and int(m2.group(1)) == int(m.group(1)), r.stdout
    # Ten deletions; those in the training set are purged from its file.
    m3 = re.search(r"(\d+) deletions; purged (\d+) rows", r.stdout)
    assert m3 and 8 <= int(m3.group(1)) <= 10, r.stdout
    assert m3.group(1) == m3.group(2), r.stdout
    for mark in ("AddressSanitizer", "runtime error:"):
        assert mark not in r.stderr
