import pyarrow.parquet as pq
import pytest
import torch

from raysweep import store
from raysweep.config import RaysweepError


def _state():
    g = torch.Generator().manual_seed(0)
    return {"w": torch.randn(3, 4, generator=g), "b16": torch.randn(5, generator=g).to(torch.bfloat16),
            "h": torch.randn(2, 2, generator=g).half(), "i": torch.arange(7), "scalar": torch.tensor(3.5),
            "empty": torch.zeros(0, 3)}


def test_round_trip_is_bit_exact(tmp_path):
    uri = str(tmp_path / "ck" / "a.parquet")
    digest = store.save_state(uri, _state(), kind="test", step=7, config={"x": 1})
    state, meta = store.load_state(uri)
    assert meta["kind"] == "test" and meta["step"] == 7 and meta["config"] == {"x": 1} and meta["sha256"] == digest
    for k, v in _state().items():
        assert state[k].dtype == v.dtype and state[k].shape == v.shape
        assert torch.equal(state[k].reshape(-1).view(torch.uint8), v.reshape(-1).view(torch.uint8))


def test_truncated_file_is_named(tmp_path):
    uri = str(tmp_path / "t.parquet")
    store.save_state(uri, _state(), kind="test")
    data = open(uri, "rb").read()
    open(uri, "wb").write(data[: len(data) // 2])
    with pytest.raises(store.CorruptCheckpoint, match="t.parquet"):
        store.load_state(uri)


def test_tampered_bytes_fail_the_hash(tmp_path):
    uri = str(tmp_path / "x.parquet")
    store.save_state(uri, _state(), kind="test")
    table = pq.read_table(uri)
    cols = table.to_pydict()
    blob = bytearray(cols["data"][0])
    blob[0] ^= 1  # one flipped bit in one weight
    cols["data"][0] = bytes(blob)
    import pyarrow as pa
    pq.write_table(pa.table(cols, schema=table.schema), uri)
    with pytest.raises(store.CorruptCheckpoint, match="x.parquet.*hash.*delete it and run again"):
        store.load_state(uri)


def test_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(RaysweepError, match="nope.parquet"):
        store.load_state(str(tmp_path / "nope.parquet"))


def test_cached_module_builds_once(tmp_path):
    calls = []

    def build():
        calls.append(1)
        return torch.nn.Linear(2, 2), {"acc": 0.5}

    key = {"a": 1}
    m1, extra1, cached1 = store.cached_module(str(tmp_path), "lin", key, build, lambda: torch.nn.Linear(2, 2))
    m2, extra2, cached2 = store.cached_module(str(tmp_path), "lin", key, build, lambda: torch.nn.Linear(2, 2))
    assert calls == [1] and (cached1, cached2) == (False, True) and extra2 == {"acc": 0.5}
    assert torch.equal(m1.weight, m2.weight)
    store.cached_module(str(tmp_path), "lin", {"a": 2}, build, lambda: torch.nn.Linear(2, 2))
    assert calls == [1, 1]  # another config is another artefact


def test_an_output_location_is_checked_before_any_work(tmp_path):
    store.ensure_writable(str(tmp_path / "new" / "dir"), "--out")
    assert (tmp_path / "new" / "dir").is_dir() and not any((tmp_path / "new" / "dir").iterdir())  # probe removed
    (tmp_path / "f").write_text("x")
    with pytest.raises(RaysweepError, match=r"^--out .*/f is a file, not a directory$"):
        store.ensure_writable(str(tmp_path / "f"), "--out")
    with pytest.raises(RaysweepError, match=r"^--storage /proc/raysweep-x is not writable: "):
        store.ensure_writable("/proc/raysweep-x", "--storage")


def test_uris_inside_a_sweep_are_relative_and_a_moved_result_is_rebased():
    assert store.relative("/a/runs/store/u/x.parquet", "/a/runs/sw") == "../store/u/x.parquet"
    assert store.relative("s3://b/runs/sw/trials/t/a.parquet", "s3://b/runs/sw") == "trials/t/a.parquet"
    assert store.relative("s3://other/x.parquet", "s3://b/runs/sw") == "s3://other/x.parquet"  # another storage
    assert store.relative("s3://b/x.parquet", "/a/runs/sw") == "s3://b/x.parquet"
    for uri, root in [("/a/runs/store/u/x.parquet", "/a/runs/sw"), ("s3://b/runs/store/x", "s3://b/runs/sw"),
                      ("s3://b/runs/sw/trials/t/a.parquet", "s3://b/runs/sw"), ("s3://other/x", "/a/runs")]:
        assert store.locate(store.relative(uri, root), root) == uri
    old, new = store.moved_root("/a/runs/sw/trials/t", "/z/copy/sw/trials/t")
    assert (old, new) == ("/a/runs", "/z/copy")
    moved = store.rebase({"u": "/a/runs/store/x", "l": ["/a/runs/sw/t/a", "/a/runsx/y", 3]}, old, new)
    assert moved == {"u": "/z/copy/store/x", "l": ["/z/copy/sw/t/a", "/a/runsx/y", 3]}


def test_storage_every_node_can_reach_is_object_storage_or_a_network_mount(tmp_path, monkeypatch):
    mounts = tmp_path / "mounts"
    mounts.write_text("overlay / overlay rw 0 0\n"
                      "server:/export /mnt/shared nfs4 rw,relatime 0 0\n"
                      "tmpfs /mnt/shared/scratch tmpfs rw 0 0\n"
                      "s3fs /mnt/my\\040bucket fuse.s3fs rw 0 0\n")
    monkeypatch.delenv("RAYSWEEP_SHARED_STORAGE", raising=False)
    assert store.filesystem_type("/mnt/shared/runs", str(mounts)) == "nfs4"
    assert store.filesystem_type("/mnt/shared/scratch/runs", str(mounts)) == "tmpfs"  # the longest mount point
    assert store.filesystem_type("/mnt/sharedx", str(mounts)) == "overlay"
    assert store.shared("/mnt/shared/runs", str(mounts)) and store.shared("/mnt/my bucket/x", str(mounts))
    assert store.shared("s3://bucket/runs", str(mounts))
    assert not store.shared("/home/me/runs", str(mounts)) and not store.shared("/mnt/shared/scratch", str(mounts))
    monkeypatch.setenv("RAYSWEEP_SHARED_STORAGE", "1")  # a shared filesystem raysweep does not recognise
    assert store.shared("/home/me/runs", str(mounts))
