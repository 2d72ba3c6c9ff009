"""The manifest of a saved directory: what it holds, and proof that nothing else was added.

``siamcl.json`` names the format, carries the parameters as JSON, and lists the sha256 of
every other file. Loading refuses a directory whose files differ from that list (a file
missing, changed, or not listed at all), and a manifest whose own checksum does not match.

What the checksums protect against: damage (a truncated copy, a flipped bit, a hand edit of
one file). What they do not: anyone who can write the directory can also recompute every
checksum. To know that a shared model comes from whom it claims, save it with a ``key`` and
load it with the same key: the manifest then carries an HMAC-SHA256 of its contents, which
only a holder of the key can produce.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

from siamcl._atomic import file_checksums, recover, sha256_file, write_json

__all__ = ["MANIFEST", "read_manifest", "verify_files", "write_manifest"]

MANIFEST = "siamcl.json"
_SEALS = ("manifest_sha256", "hmac")


def write_manifest(directory: Path, manifest: dict[str, Any], key: str | bytes | None) -> None:
    """Write ``manifest`` plus the checksum of every file in ``directory``, its own checksum
    and, with ``key``, its HMAC."""
    manifest = {**manifest, "files": file_checksums(directory, exclude=[MANIFEST])}
    manifest["manifest_sha256"] = hashlib.sha256(_canonical(manifest)).hexdigest()
    if key is not None:
        manifest["hmac"] = _hmac(manifest, key)
    write_json(directory / MANIFEST, manifest)


def read_manifest(
    source: Path, format_name: str, versions: tuple[int, ...], key: str | bytes | None = None
) -> dict[str, Any]:
    """The manifest of a saved directory, checked: format, version, its own checksum and,
    with ``key``, its HMAC. Every problem is a ValueError naming the file."""
    recover(source)  # a save killed between its two renames left the model aside
    if not source.exists():
        raise FileNotFoundError(f"no saved classifier at {source}: the directory does not exist")
    if not source.is_dir():
        raise ValueError(f"{source} is not a directory holding a saved classifier")
    path = source / MANIFEST
    if not path.is_file():
        raise ValueError(f"{source} is not a saved siamcl classifier: {MANIFEST} is missing")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is corrupt: {error}") from error
    if not isinstance(manifest, dict) or manifest.get("format") != format_name:
        raise ValueError(f"{source} was written by another tool, not as {format_name}")
    version = manifest.get("format_version")
    if version not in versions:
        raise ValueError(
            f"{source} has format version {version}; this siamcl reads versions {list(versions)}"
        )
    if "manifest_sha256" in manifest or version >= 2:
        digest = hashlib.sha256(_canonical(manifest)).hexdigest()
        if manifest.get("manifest_sha256") != digest:
            raise ValueError(f"{path} is corrupt: its own checksum does not match its contents")
    _check_key(manifest, key, path)
    return manifest


def verify_files(source: Path, manifest: dict[str, Any], required: set[str]) -> None:
    """Every file the manifest lists is there with its checksum, the required ones are
    listed, and no other file is present."""
    files = manifest.get("files")
    path = source / MANIFEST
    if not (
        isinstance(files, dict)
        and required <= files.keys()
        and all(isinstance(digest, str) for digest in files.values())
        and all(_inside(name) for name in files)
    ):
        raise ValueError(f"{path} is corrupt: its list of files and checksums is incomplete")
    for name, digest in files.items():
        if not (source / name).is_file():
            raise ValueError(f"{source} is incomplete: {name} is missing")
        if sha256_file(source / name) != digest:
            raise ValueError(f"{source} is corrupt: checksum of {name} does not match")
    present = {p.relative_to(source).as_posix() for p in source.rglob("*") if not p.is_dir()} - {
        MANIFEST
    }
    unlisted = sorted(present - files.keys())
    if unlisted:
        raise ValueError(
            f"{source} holds files its manifest does not list ({unlisted[:5]}): refusing to load "
            f"a directory that was added to"
        )


def _check_key(manifest: dict[str, Any], key: str | bytes | None, path: Path) -> None:
    if key is None:
        return
    if "hmac" not in manifest:
        raise ValueError(f"{path} is not signed: it was saved without a key")
    if not hmac.compare_digest(str(manifest["hmac"]), _hmac(manifest, key)):
        raise ValueError(f"{path} is not signed with this key (or was changed after signing)")


def _canonical(manifest: dict[str, Any]) -> bytes:
    unsealed = {k: v for k, v in manifest.items() if k not in _SEALS}
    return json.dumps(unsealed, sort_keys=True, separators=(",", ":")).encode()


def _hmac(manifest: dict[str, Any], key: str | bytes) -> str:
    secret = key.encode() if isinstance(key, str) else bytes(key)
    return hmac.new(secret, _canonical(manifest), hashlib.sha256).hexdigest()


def _inside(name: str) -> bool:
    """Whether a manifest's file name stays inside the saved directory."""
    relative = Path(name)
    return not relative.is_absolute() and ".." not in relative.parts
