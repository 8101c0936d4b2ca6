"""Weights as Parquet on any ``pyarrow.fs`` filesystem: one row per tensor (name, dtype, shape, raw bytes).

No pickle: a tensor is its little-endian bytes plus dtype and shape; metadata (kind, step, resolved config,
content hash) rides in the Parquet schema metadata. The content hash covers every name, dtype, shape and byte,
so truncation or tampering is caught on read and reported with the file's URI.

In a data-parallel trial (``raysweep.parallel``) rank 0 alone writes, and whether a file exists is rank 0's
answer on every rank: the ranks take the same branches and read what rank 0 wrote.
"""
from __future__ import annotations

import hashlib
import json
import os
import posixpath
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import torch

from . import parallel
from .config import RaysweepError, content_hash


RECOVER = ("; delete it and run again (a sweep with --resume): raysweep rebuilds what it caches and restarts the phase "
           "whose state this was")


class CorruptCheckpoint(RaysweepError):
    def __init__(self, message: str):  # every such error says how to recover
        super().__init__(message + RECOVER)


SCHEMA = pa.schema([("name", pa.string()), ("dtype", pa.string()), ("shape", pa.list_(pa.int64())),
                    ("data", pa.large_binary())])


def _digest(rows: list[tuple[str, str, list[int], bytes]]) -> str:
    h = hashlib.sha256()
    for name, dtype, shape, data in rows:
        h.update(f"{name}|{dtype}|{shape}|{len(data)}|".encode())
        h.update(data)
    return h.hexdigest()


def _to_bytes(t: torch.Tensor) -> tuple[str, list[int], bytes]:
    t = t.detach().cpu().contiguous()
    dtype = str(t.dtype).removeprefix("torch.")
    # bfloat16 has no numpy dtype: move its bits as int16, bit-exact
    arr = t.view(torch.int16).numpy() if t.dtype == torch.bfloat16 else t.numpy()
    return dtype, list(t.shape), arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()


def _from_bytes(dtype: str, shape: list[int], data: bytes) -> torch.Tensor:
    if dtype == "bfloat16":
        return torch.from_numpy(np.frombuffer(data, dtype="<i2").copy()).view(torch.bfloat16).reshape(shape)
    return torch.from_numpy(np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<")).copy()).reshape(shape)


def is_remote(uri: str) -> bool:
    """A URI with a scheme (s3://, gs://, file://), as opposed to a plain local path."""
    return "://" in uri


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """``s3://bucket/key``, ``gs://…``, ``file:///…`` or a plain local path -> (filesystem, path)."""
    if is_remote(uri):
        try:
            return pafs.FileSystem.from_uri(uri)
        except (pa.ArrowInvalid, OSError) as e:
            raise RaysweepError(f"cannot open storage {uri}: {e}") from None
    return pafs.LocalFileSystem(), os.path.abspath(uri)


def save_state(uri: str, state: dict[str, torch.Tensor], *, kind: str, step: int = 0,
               config: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> str:
    """Write a state dict; returns its content hash. Written to a temporary name, then moved into place."""
    rows = [(name, *_to_bytes(t)) for name, t in state.items()]
    digest = _digest(rows)
    meta = {"kind": kind, "step": step, "config": config or {}, "sha256": digest, "extra": extra or {}}
    table = pa.table({"name": [r[0] for r in rows], "dtype": [r[1] for r in rows], "shape": [r[2] for r in rows],
                      "data": [r[3] for r in rows]}, schema=SCHEMA.with_metadata({"raysweep": json.dumps(meta)}))
    if not parallel.leader():
        return digest
    fs, path = resolve(uri)
    fs.create_dir(posixpath.dirname(path), recursive=True)
    tmp = f"{path}.tmp"
    with fs.open_output_stream(tmp) as f:
        pq.write_table(table, f)
    fs.move(tmp, path)
    return digest


def load_state(uri: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read and verify a checkpoint; any damage raises ``CorruptCheckpoint`` naming ``uri``."""
    fs, path = resolve(uri)
    if fs.get_file_info(path).type != pafs.FileType.File:
        raise RaysweepError(f"checkpoint not found: {uri}")
    try:
        with fs.open_input_file(path) as f:
            table = pq.read_table(f)
        meta = json.loads(table.schema.metadata[b"raysweep"])
    except (pa.ArrowException, OSError, KeyError, TypeError, ValueError) as e:
        raise CorruptCheckpoint(f"corrupt checkpoint {uri}: {str(e).splitlines()[0]}") from None
    cols = table.to_pydict()
    rows = list(zip(cols["name"], cols["dtype"], cols["shape"], cols["data"]))
    if _digest(rows) != meta.get("sha256"):
        raise CorruptCheckpoint(f"corrupt checkpoint {uri}: content hash does not match its metadata")
    try:
        state = {name: _from_bytes(dtype, shape, data) for name, dtype, shape, data in rows}
    except (TypeError, ValueError) as e:
        raise CorruptCheckpoint(f"corrupt checkpoint {uri}: {e}") from None
    return state, meta


def save_loop(uri: str, state, config: dict[str, Any]) -> None:
    """A resumable loop state (``raysweep.loop.LoopState``): weights, optimiser, RNG, curve so far."""
    save_state(uri, state.tensors, kind="loop-state", step=state.step, config=config, extra=state.meta)


def load_loop(uri: str, config: dict[str, Any]):
    """The loop state at ``uri`` if it exists and belongs to ``config``, else None (damage still raises)."""
    from .loop import LoopState

    if not exists(uri):
        return None
    tensors, meta = load_state(uri)
    return LoopState(meta["step"], tensors, meta["extra"]) if content_hash(meta["config"]) == content_hash(config) else None


def exists(uri: str) -> bool:
    def answer() -> bool:
        fs, path = resolve(uri)
        return fs.get_file_info(path).type == pafs.FileType.File

    return parallel.agree(answer)


def join(root: str, *parts: str) -> str:
    return posixpath.join(root.rstrip("/"), *parts)


def _split(uri: str) -> tuple[str, str]:
    """(scheme://bucket, path) of a URI; ("", absolute path) of a local one."""
    if is_remote(uri):
        scheme, rest = uri.split("://", 1)
        bucket, _, path = rest.partition("/")
        return f"{scheme}://{bucket}", "/" + path
    return "", os.path.abspath(uri)


def relative(uri: str, root: str) -> str:
    """``uri`` relative to ``root`` when both are on the same storage (so a copied or moved sweep still finds its
    files); unchanged when it lives on another one."""
    (where, path), (root_where, root_path) = _split(uri), _split(root)
    return posixpath.relpath(path, root_path) if uri and where == root_where else uri


def locate(uri: str, root: str) -> str:
    """The inverse of ``relative``: a URI stored relative to ``root`` made usable again."""
    if not uri or is_remote(uri) or os.path.isabs(uri):
        return uri
    where, path = _split(root)
    return where + posixpath.normpath(posixpath.join(path, uri)) if where else os.path.normpath(
        os.path.join(path, uri))


def rebase(obj: Any, old: str, new: str) -> Any:
    """Every string in ``obj`` (a JSON value) that lies under the directory ``old`` moved to ``new``: what a
    trial wrote before its storage was copied or moved, made to point at the copy."""
    if isinstance(obj, str):
        return new + obj[len(old):] if obj == old or obj.startswith(old.rstrip("/") + "/") else obj
    if isinstance(obj, dict):
        return {k: rebase(v, old, new) for k, v in obj.items()}
    if isinstance(obj, list):
        return [rebase(v, old, new) for v in obj]
    return obj


def moved_root(old_dir: str, new_dir: str) -> tuple[str, str]:
    """(old root, new root): ``old_dir`` and ``new_dir`` with their common trailing components removed, i.e. the
    directory that was copied or moved."""
    a, b = old_dir.rstrip("/").split("/"), new_dir.rstrip("/").split("/")
    while len(a) > 1 and len(b) > 1 and a[-1] == b[-1]:
        a, b = a[:-1], b[:-1]
    return "/".join(a), "/".join(b)


def artefact(root: str, kind: str, key_config: dict[str, Any], ext: str = "parquet") -> str:
    """Where a cached artefact of ``kind`` lives: ``root/base/<kind>-<hash of its key>.<ext>``."""
    return join(root, "base", f"{kind}-{content_hash(key_config)}.{ext}")


def cached_state(root: str, kind: str, key_config: dict[str, Any],
                 build: Callable[[], tuple[dict[str, torch.Tensor], dict]]) -> tuple[dict[str, torch.Tensor], dict, bool]:
    """Load ``kind`` from ``root/base/kind-<hash of key_config>.parquet`` or build (tensors, extra metadata) and
    save it. Returns (tensors, extra, was_cached)."""
    uri = artefact(root, kind, key_config)
    if exists(uri):
        state, meta = load_state(uri)
        return state, meta["extra"], True
    state, extra = build()
    save_state(uri, state, kind=kind, config=key_config, extra=extra)
    return state, extra, False


def cached_module(root: str, kind: str, key_config: dict[str, Any], build: Callable[[], tuple[torch.nn.Module, dict]],
                  make: Callable[[], torch.nn.Module]) -> tuple[torch.nn.Module, dict, bool]:
    """``cached_state`` for a module: ``build()`` returns (module, extra metadata); ``make()`` an untrained module
    to load cached weights into. Returns (module, extra, was_cached)."""
    built = []

    def build_state():
        module, extra = build()
        built.append(module)
        return module.state_dict(), extra

    state, extra, cached = cached_state(root, kind, key_config, build_state)
    if not cached:
        return built[0], extra, False
    module = make()
    module.load_state_dict(state)
    return module, extra, True


SHARED_FS = ("nfs", "nfs4", "cifs", "smb3", "ceph", "lustre", "glusterfs", "gpfs", "beegfs", "9p", "fuse.")


def filesystem_type(path: str, mounts: str = "/proc/mounts") -> str:
    """The type of the filesystem holding local ``path`` (the longest mount point above it), "" if unknown."""
    try:
        lines = Path(mounts).read_text().splitlines()
    except OSError:
        return ""
    path = os.path.realpath(path)
    best, kind = "", ""
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].encode().decode("unicode_escape")  # /proc/mounts escapes spaces as \040
        if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def shared(uri: str, mounts: str = "/proc/mounts") -> bool:
    """Whether every node of a cluster can reach ``uri``: object storage, or a network filesystem mount."""
    kind = "" if is_remote(uri) else filesystem_type(uri, mounts)
    return is_remote(uri) or kind.startswith(SHARED_FS) or os.environ.get("RAYSWEEP_SHARED_STORAGE") == "1"


def ensure_writable(uri: str, flag: str) -> None:
    """Check an output location before any work: create it and write and delete a probe file there, so a
    read-only path, a file in the way or an unreachable bucket is one line naming ``flag``, not a traceback
    minutes later."""
    fs, path = resolve(uri)
    probe = posixpath.join(path, f".raysweep-probe-{os.getpid()}")
    try:
        if fs.get_file_info(path).type == pafs.FileType.File:
            raise RaysweepError(f"{flag} {uri} is a file, not a directory")
        fs.create_dir(path, recursive=True)
        with fs.open_output_stream(probe) as f:
            f.write(b"")
        fs.delete_file(probe)
    except (OSError, pa.ArrowException) as e:
        reason = str(e).split(". Detail")[0].splitlines()[0]
        raise RaysweepError(f"{flag} {uri} is not writable: {reason}") from None


def write_json(uri: str, obj: Any) -> None:
    if not parallel.leader():
        return
    fs, path = resolve(uri)
    fs.create_dir(posixpath.dirname(path), recursive=True)
    with fs.open_output_stream(f"{path}.tmp") as f:
        f.write(json.dumps(obj, indent=1, sort_keys=True).encode())
    fs.move(f"{path}.tmp", path)


def put_file(local: str, uri: str) -> str:
    """Copy a local file to ``uri`` (any filesystem); returns ``uri``."""
    if not parallel.leader():
        return uri
    fs, path = resolve(uri)
    fs.create_dir(posixpath.dirname(path), recursive=True)
    with open(local, "rb") as src, fs.open_output_stream(path) as dst:
        dst.write(src.read())
    return uri


def get_file(uri: str, local: str) -> str:
    """Copy ``uri`` to a local file; returns ``local``."""
    fs, path = resolve(uri)
    with fs.open_input_stream(path) as src, open(local, "wb") as dst:
        dst.write(src.read())
    return local


def read_json(uri: str) -> Any:
    fs, path = resolve(uri)
    with fs.open_input_stream(path) as f:
        return json.loads(f.read())
