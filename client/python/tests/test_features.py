"""Features for ML through the package: labelled DataFrames, NumPy, shards,
resumption of a broken stream, PyTorch workers, and purging deleted
consumers from training data already taken."""
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import vaultd
from conftest import N_CONSUMERS, ROOT, VAULTCTL, Dropped, consumers, plain_client

ATTRS = ["age", "device", "income_band", "purchases_90d", "email_opt_in",
         "ethnicity", "converted"]


def expected():
    """What the vault holds of the consumers no test deletes (0..199)."""
    return {cid: a for cid, a in consumers()[:200]}


def test_to_pandas_labels_every_column(plain):
    with plain_client(plain) as c:
        spec = c.feature_spec("training")
        stream = c.features("training", "labels-ds", ATTRS, batch_size=64)
        df = stream.to_pandas(spec)
        raw = c.features("training", "labels-ds", ATTRS).to_numpy()[1]
    assert list(df.columns) == ["pseudonym"] + ATTRS
    assert len(df) == len(raw) >= 200 and stream.rows == len(df)
    assert df["pseudonym"].str.fullmatch("[0-9a-f]{32}").all()
    # Closed vocabulary: the values themselves; 'tv' (2 consumers, k = 5)
    # is the OTHER token, labelled as such.
    dev = spec.attributes["device"]
    assert set(dev.labels.values()) == {"mobile", "desktop", "tablet", "tv", "other"}
    assert df["device"].dtype == "category"
    counts = df["device"].value_counts()
    assert counts[vaultd.features.OTHER_LABEL] == 2
    assert set(counts[counts > 0].index) == {"mobile", "desktop", "tablet",
                                             vaultd.features.OTHER_LABEL}
    # The labels agree with the raw tokens, column by column.
    j = ATTRS.index("device")
    inv = {v: t for t, v in dev.labels.items()}
    for label, token in inv.items():
        if label in counts and counts[label] > 0:
            assert (raw[:, j][np.asarray(df["device"] == label)] == token).all()
    # Open category: tokens, never values.
    eth = spec.attributes["ethnicity"]
    assert eth.labels == {}
    assert set(df["ethnicity"].cat.categories) <= {
        int(t) for t in raw[:, ATTRS.index("ethnicity")]}
    # Buckets: ordered ranges; booleans: nullable booleans.
    assert df["age"].cat.ordered
    assert list(df["age"].cat.categories) == spec.attributes["age"].bucket_labels()
    want_old = sum(int(a["age"]) >= 65 for a in expected().values())
    assert (df["age"] == ">=65").sum() >= want_old
    assert df["converted"].dtype == "boolean"
    assert df["converted"].sum() == (raw[:, ATTRS.index("converted")] == 2).sum()


def test_shards_are_disjoint_and_cover_the_stream(plain):
    with plain_client(plain) as c:
        whole = c.features("training", "shard-ds", ATTRS).to_pandas(labelled=False)
        for n in (1, 2, 3):
            parts = [c.features("training", "shard-ds", ATTRS, shard=(i, n),
                                batch_size=50).to_pandas(labelled=False)
                     for i in range(n)]
            sizes = [len(p) for p in parts]
            assert sum(sizes) == len(whole)
            if n > 1:
                assert all(0 < s < len(whole) for s in sizes)
            joined = pd.concat(parts).sort_values("pseudonym").reset_index(drop=True)
            assert joined.equals(whole.sort_values("pseudonym").reset_index(drop=True))
    with pytest.raises(ValueError):
        c.features("training", "shard-ds", shard=(2, 2))


class BreakAfterFirstBatch:
    """Wraps Client._fetch: the first stream breaks (UNAVAILABLE) after its
    first batch, as a dropped connection would."""

    def __init__(self, fn):
        self.fn, self.calls, self.tokens = fn, 0, []

    def __call__(self, req, timeout):
        self.calls += 1
        self.tokens.append(req.page_token)
        first = self.calls == 1
        for i, b in enumerate(self.fn(req, timeout)):
            if first and i == 1:
                raise Dropped()
            yield b


def test_a_broken_stream_resumes_after_its_last_batch(plain):
    with plain_client(plain) as c:
        whole = c.features("training", "resume-ds", ATTRS).to_pandas(labelled=False)
        broken = BreakAfterFirstBatch(c._fetch)
        c._fetch = broken
        stream = c.features("training", "resume-ds", ATTRS, batch_size=40)
        df = stream.to_pandas(labelled=False)
    assert broken.calls == 2 and stream.resumed == 1
    assert broken.tokens[0] == "" and broken.tokens[1] != ""
    assert df["pseudonym"].is_unique
    assert set(df["pseudonym"]) == set(whole["pseudonym"])


def test_retries_are_bounded(plain):
    with plain_client(plain) as c:
        class AlwaysBroken(BreakAfterFirstBatch):
            def __call__(self, req, timeout):
                self.calls += 1
                raise Dropped()
                yield
        broken = AlwaysBroken(c._fetch)
        c._fetch = broken
        with pytest.raises(vaultd.Unavailable):
            c.features("training", "bounded-ds", ATTRS, retries=2).to_numpy()
    assert broken.calls == 3


def test_torch_workers_read_disjoint_shards(plain):
    torch = pytest.importorskip("torch")
    from vaultd.torchdata import FeatureDataset
    with plain_client(plain) as c:
        whole = c.features("training", "torch-ds", ATTRS).to_pandas(labelled=False)
        ds = FeatureDataset(c.settings, "training", "torch-ds", ATTRS,
                            batch_size=32, with_pseudonyms=True)
    for workers in (0, 2):
        loader = ds.loader(workers)
        seen, rows = [], 0
        for pseudonyms, t in loader:
            assert t.dtype == torch.int64 and t.shape == (len(pseudonyms), len(ATTRS))
            seen += pseudonyms
            rows += t.shape[0]
        assert rows == len(whole) and len(set(seen)) == rows
        assert set(seen) == set(whole["pseudonym"])


def test_loader_forks_workers_only_in_a_process_without_threads(plain):
    """vaultd.torchdata.start_method: "fork" in a process that never opened
    a channel, "spawn" once one was opened, closed or not (gRPC does not
    survive a fork). Run in a fresh interpreter: this one has opened some."""
    pytest.importorskip("torch")
    script = (
        "import sys, vaultd, vaultd.torchdata as td\n"
        "s = vaultd.Settings.resolve(sys.argv[1], token_file=sys.argv[2], "
        "use_env=False)\n"
        "print(td.start_method())\n"
        "c = vaultd.Client(settings=s)\n"
        "print(td.start_method())\n"
        "c.close()\n"
        "print(td.start_method())\n")
    out = subprocess.run([sys.executable, "-c", script, plain.addr,
                          str(plain.data_dir / "dev-token")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["fork", "spawn", "spawn"]


def test_torch_example_with_two_forked_workers(plain):
    """examples/torch_train.py builds Settings without a channel, so its two
    DataLoader workers are forked: they train on every labelled row, as
    with none."""
    pytest.importorskip("torch")
    trained = []
    for workers in (0, 2):
        out = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "torch_train.py"),
             "--addr", plain.addr, "--token-file",
             str(plain.data_dir / "dev-token"), "--workers", str(workers),
             "--dataset", f"torch-example-{workers}", "--batch-size", "50"],
            capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        started = "(fork)" if workers else "(in process)"
        assert started in out.stdout, out.stdout
        trained.append(out.stdout.split(" rows in ")[0].split()[-1])
    assert trained[0] == trained[1] and int(trained[0]) > 0


def test_deletion_feed_purges_training_data(plain, tmp_path):
    with plain_client(plain) as c:
        df = c.features("training", "purge-ds", ATTRS).to_pandas()
        # The training set on disk, as vaultctl writes it and as JSONL.
        out = subprocess.run(
            [VAULTCTL, "--addr", plain.addr, "--token-file",
             str(plain.data_dir / "dev-token"), "features", "--purpose",
             "training", "--dataset", "purge-ds", "--format", "csv"],
            capture_output=True, text=True,
            check=True).stdout
        (tmp_path / "train").mkdir()
        (tmp_path / "train" / "part-0.csv").write_text(out)
        with open(tmp_path / "train" / "part-1.jsonl", "w") as f:
            for p in df["pseudonym"]:
                f.write(json.dumps({"pseudonym": p, "x": 1}) + "\n")
        doomed = [cid for cid, _ in consumers()[232:N_CONSUMERS]]
        c.delete_many(doomed)
        events = list(c.watch_deletions("purge-ds", follow=False))
    assert len(events) == len(doomed)
    gone = {e.pseudonym for e in events}
    assert gone <= set(df["pseudonym"])
    kept = vaultd.purge_frame(df, events)
    assert len(kept) == len(df) - len(doomed)
    assert not set(kept["pseudonym"]) & gone
    report = vaultd.purge_files(tmp_path / "train", events)
    assert (report.files, report.changed) == (2, 2)
    assert report.rows_removed == 2 * len(doomed)
    left = pd.read_csv(tmp_path / "train" / "part-0.csv")
    assert len(left) == len(df) - len(doomed) and not set(left["pseudonym"]) & gone
    # Every other byte stays: the rows kept are the lines they were.
    kept_lines = [ln for ln in out.splitlines(keepends=True)
                  if not any(g in ln for g in gone)]
    assert (tmp_path / "train" / "part-0.csv").read_text() == "".join(kept_lines)
    # A file that cannot be purged is reported; the others are still done.
    (tmp_path / "train" / "notes.csv").write_text("a,b\n1,2\n")
    r2 = vaultd.purge_files(tmp_path / "train", events)
    assert r2.errors and "notes.csv" in r2.errors[0][0] and r2.files == 3
    with pytest.raises(ValueError):
        vaultd.purge_frame(df, ["not-a-pseudonym"])


def test_watch_reconnects_after_the_last_sequence(plain):
    with plain_client(plain) as c:
        c.features("training", "watch-ds", ATTRS).to_numpy()
        c.delete_many([cid for cid, _ in consumers()[228:232]])
        real = c.deletion.WatchDeletions
        calls = []

        def flaky(req, **kw):
            calls.append(req.after_seq)
            for i, e in enumerate(real(req, **kw)):
                if len(calls) == 1 and i == 2:
                    raise Dropped()
                yield e
        c.deletion.WatchDeletions = flaky
        events = list(c.watch_deletions("watch-ds", follow=False))
    assert len(events) == 4 and len({e.seq for e in events}) == 4
    assert calls[0] == 0 and calls[1] == events[1].seq


def test_to_numpy_pseudonyms_are_whole(plain):
    with plain_client(plain) as c:
        ps, toks = c.features("training", "numpy-ds", ATTRS).to_numpy()
        df = c.features("training", "numpy-ds", ATTRS).to_pandas(labelled=False)
    assert ps.shape == (len(df), 16) and ps.dtype == np.uint8
    assert [bytes(p).hex() for p in ps] == df["pseudonym"].tolist()
    assert (toks == df[ATTRS].to_numpy(dtype=np.uint64)).all()


def test_a_stream_cut_before_its_last_batch_resumes(plain):
    with plain_client(plain) as c:
        whole = c.features("training", "cut-ds", ATTRS).to_pandas(labelled=False)
        real, calls = c._fetch, []

        def cut(req, timeout):      # ends OK, but without the last batch
            calls.append(req.page_token)
            for b in real(req, timeout):
                if len(calls) == 1 and not b.next_page_token:
                    return
                yield b
        c._fetch = cut
        stream = c.features("training", "cut-ds", ATTRS, batch_size=64)
        df = stream.to_pandas(labelled=False)
    assert len(calls) == 2 and calls[1] and stream.resumed == 1 and stream.done
    assert df["pseudonym"].is_unique and len(df) == len(whole)
    assert list(stream) == []                  # complete: nothing more


def test_category_columns_are_the_same_in_every_shard(plain):
    with plain_client(plain) as c:
        spec = c.feature_spec("training")
        parts = [c.features("training", "cats-ds", ATTRS, shard=(i, 3)).to_pandas(spec)
                 for i in range(3)]
    for name in ("device", "income_band", "age"):
        cats = [list(p[name].cat.categories) for p in parts]
        assert cats[0] == cats[1] == cats[2], name
    assert pd.concat(parts)["device"].dtype == "category"


def test_consent_feed_tells_a_dataset_which_rows_to_drop(plain):
    """WatchConsent: a consumer granted, streamed, then withdrawn is an
    event for the dataset that holds it, which purge_frame takes."""
    cid = consumers()[5][0]
    with plain_client(plain) as c:
        c.set_consent(cid, "research", granted=True, source="user")
        df = c.features("research", "wc-ds", ["age"]).to_pandas()
        assert len(df) == 1
        assert list(c.watch_consent("wc-ds", follow=False)) == []
        c.set_consent(cid, "research", granted=False, source="user")
        [e] = list(c.watch_consent(purpose="research", follow=False))
        assert isinstance(e, vaultd.ConsentRevocation)
        assert (e.dataset_id, e.purpose) == ("wc-ds", "research")
        assert e.pseudonym == df["pseudonym"][0]
        assert len(vaultd.purge_frame(df, [e])) == 0
        assert list(c.watch_consent("wc-ds", after_seq=e.seq,
                                    follow=False)) == []
