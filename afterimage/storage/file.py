"""Local-directory backend: put-once by hard-linking a finished temp file into place.

Key `a/b/0.png` is the file `<root>/a/b/0.png`, holding exactly the object's bytes. Its content
type and user metadata live in a JSON sidecar, `<root>/.afterimage-meta/a/b/0.png.json`, kept out
of the tree that consumers read. A write goes to a hidden temp file beside the target and is
fsynced; then, holding an exclusive flock on the target directory, the store checks the key,
writes the sidecar (replacing only one left by a writer that died before linking) and links the
temp file to the key. `os.link` is atomic and never replaces a name, so a key shows nothing or
the whole object, never a second version; the sidecar is always in place before the data. A
body whose SHA-256 is not the one given is refused, as an S3 store refuses it.
Keys must be relative, with no empty or hidden (`.`-leading) segment, so none can leave the root.
Files are made with mode 0644 and directories 0755, less the process's umask, so a consumer
running as another user (a web server) can read the archive.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import stat
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, BinaryIO

from afterimage.errors import StorageError
from afterimage.storage.base import CHUNK, ObjectInfo, join_key

META_DIR = ".afterimage-meta"
FILE_MODE, DIR_MODE = 0o644, 0o755  # less the umask: readable by other users, as a bucket is
_COPY_CHUNK = 1024 * 1024
_MISSING = (FileNotFoundError, NotADirectoryError, IsADirectoryError)


class FileStore:
    """Objects as files under `root`."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def key(self, *parts: str) -> str:
        return join_key("", *parts)

    def put_once(
        self, key: str, body: BinaryIO, size: int, content_type: str, metadata: Mapping[str, str],
        *, sha256: str | None = None,
    ) -> bool:  # fmt: skip
        path, meta_path = self._paths(key)
        sidecar = json.dumps({"content_type": content_type, "metadata": dict(metadata)}).encode()
        with self._errors(f"write {key}"):
            if path.exists():
                return False
            _make_dirs(path.parent)
            _make_dirs(meta_path.parent)
            dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            tmp: Path | None = None
            try:
                tmp = _write_temp(path.parent, lambda out: _copy(body, out, size, sha256))
                fcntl.flock(dir_fd, fcntl.LOCK_EX)  # released when dir_fd is closed
                if path.exists():
                    return False
                os.replace(_write_temp(meta_path.parent, lambda out: out.write(sidecar)), meta_path)
                _fsync_dir(meta_path.parent)
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    return False
                os.fsync(dir_fd)
                return True
            finally:
                os.close(dir_fd)
                if tmp is not None:
                    tmp.unlink(missing_ok=True)

    def head(self, key: str) -> ObjectInfo | None:
        path, meta_path = self._paths(key)
        with self._errors(f"head {key}"):
            try:
                st = path.stat()
            except _MISSING:
                return None
            return _info(st, meta_path) if stat.S_ISREG(st.st_mode) else None

    def stream(self, key: str) -> tuple[ObjectInfo, Iterator[bytes]] | None:
        path, meta_path = self._paths(key)
        with self._errors(f"read {key}"):
            try:
                data = path.open("rb")
            except _MISSING:
                return None
            try:
                info = _info(os.fstat(data.fileno()), meta_path)
            except BaseException:
                data.close()
                raise
        return info, self._chunks(data, key)

    def get(self, key: str) -> bytes:
        path, _ = self._paths(key)
        with self._errors(f"get {key}"):
            try:
                return path.read_bytes()
            except _MISSING as exc:
                raise KeyError(key) from exc

    def ping(self) -> None:
        with self._errors("reach the directory"):
            self.root.mkdir(parents=True, exist_ok=True)
            if not os.access(self.root, os.W_OK | os.X_OK):
                raise PermissionError("not writable")

    def where(self) -> str:
        return f"directory {self.root}"

    def _chunks(self, data: IO[bytes], key: str) -> Iterator[bytes]:
        with data, self._errors(f"read {key}"):
            while chunk := data.read(CHUNK):
                yield chunk

    def _paths(self, key: str) -> tuple[Path, Path]:
        """The data file and the sidecar for `key`; ValueError if the key could leave the root."""
        segments = key.split("/")
        if any(not s or s.startswith(".") or "\x00" in s for s in segments):
            raise ValueError(f"object key not allowed in a file store: {key!r}")
        meta = self.root.joinpath(META_DIR, *segments[:-1], segments[-1] + ".json")
        return self.root.joinpath(*segments), meta

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            raise StorageError(f"file store {what} failed ({self.where()}): {exc}") from exc


def _info(st: os.stat_result, meta_path: Path) -> ObjectInfo:
    """What `head` tells of a data file with status `st`, from its sidecar at `meta_path`."""
    try:
        sidecar = json.loads(meta_path.read_bytes())
    except FileNotFoundError:
        sidecar = {}
    metadata = {str(k): str(v) for k, v in sidecar.get("metadata", {}).items()}
    return ObjectInfo(
        st.st_size, str(sidecar.get("content_type", "application/octet-stream")), metadata
    )


def _write_temp(directory: Path, write: Callable[[IO[bytes]], object]) -> Path:
    """A hidden, fsynced temp file in `directory` holding what `write` wrote; mode FILE_MODE
    less the umask (the kernel applies it), so other users may read what is archived."""
    while True:
        path = directory / f".tmp-{secrets.token_hex(8)}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        except FileExistsError:
            continue
        break
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        path.unlink()
        raise
    return path


def _copy(body: BinaryIO, out: IO[bytes], size: int, sha256: str | None) -> None:
    """Copy `body` to `out`; StorageError unless it held `size` bytes with SHA-256 `sha256`."""
    copied, digest = 0, hashlib.sha256()
    while chunk := body.read(_COPY_CHUNK):
        out.write(chunk)
        digest.update(chunk)
        copied += len(chunk)
    if copied != size:
        raise StorageError(f"body held {copied} bytes, not the {size} announced")
    if sha256 is not None and digest.hexdigest() != sha256.lower():
        raise StorageError(
            f"body's SHA-256 {digest.hexdigest()} is not the {sha256} taken while downloading"
        )


def _make_dirs(directory: Path) -> None:
    """`mkdir -p`, fsyncing the parent of each directory made so that its entry is durable."""
    if directory.is_dir():
        return
    _make_dirs(directory.parent)
    with contextlib.suppress(FileExistsError):  # made meanwhile by another writer
        directory.mkdir(DIR_MODE)
    _fsync_dir(directory.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
