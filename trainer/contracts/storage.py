"""Read, write, list and atomically publish files on local paths and ``gs://`` URIs.

One small module so that Beam jobs, the trainer and the model registry agree on paths.
GCS goes through google-cloud-storage; atomic publish uses generation-match
preconditions (``if_generation_match=0`` = create only if absent). Locally, atomic
publish is write-to-temp + ``os.replace`` and create-only uses ``os.link``, which fails
if the target exists.

The GCS client is created lazily with :func:`set_gcs_client` overriding it (tests
point it at a loopback fake-gcs-server). Nothing here reads files or the environment
on import.

Example:
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> write_text(os.path.join(d, "a.txt"), "hi")
    >>> read_text(os.path.join(d, "a.txt"))
    'hi'
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import tempfile
import threading
from typing import Any

GCS_SCHEME = "gs://"

_client_lock = threading.Lock()
_client: Any = None


# Local scratch files: temp files of atomic writes and CAS lock files.
_HIDDEN = (".tmp-", ".lock-")


class PreconditionFailed(RuntimeError):
    """A create-only or compare-and-swap write lost the race."""


def is_gcs(uri: str) -> bool:
    return uri.startswith(GCS_SCHEME)


def local_dir_problem(path: str) -> str | None:
    """Why ``path`` cannot become a writable local directory, or None (gs:// passes).

    Checked before any expensive work by every CLI that writes an output directory.
    Nothing is created: the nearest existing ancestor must be a writable directory.
    """
    if is_gcs(path):
        return None
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        parent = os.path.dirname(existing)
        if parent == existing:
            return None
        existing = parent
    if not os.path.isdir(existing):
        return f"{existing} is a file, not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None


def join(base: str, *parts: str) -> str:
    """Joins path parts with '/' for gs:// and os.path.join locally."""
    if is_gcs(base):
        return posixpath.join(base, *parts)
    return os.path.join(base, *parts)


def set_gcs_client(client: Any) -> None:
    """Uses ``client`` (a ``google.cloud.storage.Client``) for every gs:// call."""
    global _client
    with _client_lock:
        _client = client


def gcs_client() -> Any:
    """Returns the configured client, creating a default one on first use."""
    global _client
    with _client_lock:
        if _client is None:
            from google.cloud import storage  # lazy: heavy import

            _client = storage.Client()
        return _client


def _split_gcs(uri: str) -> tuple[str, str]:
    rest = uri[len(GCS_SCHEME) :]
    bucket, _, name = rest.partition("/")
    if not bucket:
        raise ValueError(f"invalid GCS URI (no bucket): {uri!r}")
    return bucket, name


def _blob(uri: str) -> Any:
    bucket, name = _split_gcs(uri)
    if not name:
        raise ValueError(f"GCS URI names a bucket, not an object: {uri!r}")
    return gcs_client().bucket(bucket).blob(name)


# ------------------------------------------------------------------------ read/write


def read_bytes(uri: str) -> bytes:
    """Reads a whole file.

    Raises:
        FileNotFoundError: naming ``uri`` if it does not exist.
    """
    if is_gcs(uri):
        from google.api_core import exceptions

        try:
            return _blob(uri).download_as_bytes()
        except exceptions.NotFound as e:
            raise FileNotFoundError(f"no such object: {uri}") from e
    with open(uri, "rb") as f:
        return f.read()


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def write_bytes(uri: str, data: bytes) -> None:
    """Writes a whole file atomically (readers see the old or the new content)."""
    if is_gcs(uri):
        _blob(uri).upload_from_string(data)
        return
    parent = os.path.dirname(os.path.abspath(uri))
    os.makedirs(parent, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=".tmp-", suffix=os.path.basename(uri))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, uri)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


def exists(uri: str) -> bool:
    if is_gcs(uri):
        bucket, name = _split_gcs(uri)
        if not name:
            return gcs_client().bucket(bucket).exists()
        if _blob(uri).exists():
            return True
        # A "directory" exists on GCS if any object has it as prefix.
        return bool(list_files(uri.rstrip("/") + "/", max_results=1))
    return os.path.exists(uri)


def makedirs(uri: str) -> None:
    """Creates a local directory (a no-op on GCS, where directories are prefixes)."""
    if not is_gcs(uri):
        os.makedirs(uri, exist_ok=True)


def list_files(prefix: str, max_results: int | None = None) -> list[str]:
    """Lists files under a directory (recursively), sorted, as full URIs."""
    if is_gcs(prefix):
        bucket, name = _split_gcs(prefix)
        if name and not name.endswith("/"):
            name += "/"
        blobs = gcs_client().list_blobs(bucket, prefix=name, max_results=max_results)
        return sorted(f"{GCS_SCHEME}{bucket}/{b.name}" for b in blobs)
    if not os.path.isdir(prefix):
        return []
    out = []
    for root, _dirs, files in os.walk(prefix):
        out.extend(os.path.join(root, f) for f in files if not f.startswith(_HIDDEN))
    out.sort()
    return out[:max_results] if max_results else out


def delete(uri: str) -> None:
    if is_gcs(uri):
        _blob(uri).delete()
    else:
        os.unlink(uri)


# --------------------------------------------------------------------- atomic publish


def create_if_absent(uri: str, data: bytes) -> bool:
    """Writes ``data`` only if ``uri`` does not exist; returns False if it did.

    Safe under concurrent writers: exactly one of several racing calls returns True.
    """
    if is_gcs(uri):
        from google.api_core import exceptions

        try:
            _blob(uri).upload_from_string(data, if_generation_match=0)
            return True
        except exceptions.PreconditionFailed:
            return False
    parent = os.path.dirname(os.path.abspath(uri))
    os.makedirs(parent, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            os.link(tmp, uri)  # atomic, fails if uri exists
            return True
        except FileExistsError:
            return False
    finally:
        os.unlink(tmp)


def read_with_generation(uri: str) -> tuple[bytes, int]:
    """Reads a file with its generation (GCS) or a content-derived version (local).

    Returns ``(b"", 0)`` when the file does not exist, matching GCS's convention that
    generation 0 means "absent".
    """
    if is_gcs(uri):
        from google.api_core import exceptions

        blob = _blob(uri)
        try:
            data = blob.download_as_bytes()
        except exceptions.NotFound:
            return b"", 0
        return data, int(blob.generation)
    try:
        with open(uri, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return b"", 0
    return data, _content_generation(data)


def _content_generation(data: bytes) -> int:
    """A nonzero version derived from the bytes themselves.

    Derived from the content rather than (inode, mtime): a stat taken apart from the
    read can pair old bytes with a new version, and inode numbers are reused within
    one mtime tick, so both lose updates. With a content hash, a CAS succeeds only if
    the file still holds exactly the bytes that were read.
    """
    digest = hashlib.blake2b(data, digest_size=8).digest()
    return int.from_bytes(digest, "big") | 1  # never 0, which means "absent"


def write_if_generation_match(uri: str, data: bytes, generation: int) -> None:
    """Compare-and-swap: writes only if the file is still at ``generation``.

    Raises:
        PreconditionFailed: if another writer changed the file since it was read.
    """
    if is_gcs(uri):
        from google.api_core import exceptions

        try:
            _blob(uri).upload_from_string(data, if_generation_match=generation)
        except exceptions.PreconditionFailed as e:
            raise PreconditionFailed(
                f"{uri} changed since generation {generation}"
            ) from e
        return
    import fcntl

    parent = os.path.dirname(os.path.abspath(uri))
    os.makedirs(parent, exist_ok=True)
    lock_path = os.path.join(parent, f".lock-{os.path.basename(uri)}")
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            _, current = read_with_generation(uri)
            if current != generation:
                raise PreconditionFailed(f"{uri} changed since generation {generation}")
            write_bytes(uri, data)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# ------------------------------------------------------------------------ directories


def upload_dir(local_dir: str, uri: str) -> list[str]:
    """Copies a local directory tree to ``uri`` (local or gs://); returns written URIs."""
    written = []
    for path in list_files(local_dir):
        rel = os.path.relpath(path, local_dir).replace(os.sep, "/")
        dest = join(uri, rel)
        with open(path, "rb") as f:
            write_bytes(dest, f.read())
        written.append(dest)
    return written


def download_dir(uri: str, local_dir: str) -> list[str]:
    """Copies every file under ``uri`` into ``local_dir``; returns local paths."""
    out = []
    base = uri.rstrip("/") + "/"
    for src in list_files(uri):
        rel = src[len(base) :] if src.startswith(base) else os.path.basename(src)
        dest = os.path.join(local_dir, *rel.split("/"))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with open(dest, "wb") as f:
            f.write(read_bytes(src))
        out.append(dest)
    return out
