"""Omniglot reader: the authors' zips, the same folders extracted, or torchvision's layout.

Each subset (``images_background_small1.zip`` and so on) holds
``<subset>/<Alphabet>/<characterNN>/<id>_<drawer>.png``: 105x105 black strokes on white.
A ``data_root`` may be a folder holding such zips or extracted ``images_*`` folders
(directly or under torchvision's ``omniglot-py/``), one zip, or one extracted subset.
An image present in several subsets (Greek and Latin are in both "small" subsets) is
read once, from the first subset in name order.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from tqdm.auto import tqdm

from siamcl.data.images import ImageSize, check_size, decode_bytes, stack_images

EXPECTED_FILES = ("images_background_small1.zip", "images_background_small2.zip")
_FILE_NAME = re.compile(r"^\d+_(\d+)\.png$", re.IGNORECASE)


@dataclass(frozen=True)
class _Entry:
    """One image inside a source: where it is, and what it shows."""

    alphabet: str
    character: str
    file_name: str
    member: str  # name inside the zip, or the file's path for a folder
    source: Path
    in_zip: bool

    @property
    def key(self) -> tuple[str, str, str]:
        return self.alphabet, self.character, self.file_name


@dataclass(frozen=True, repr=False, eq=False)
class OmniglotData:
    """Omniglot images with one integer label per character and per-image metadata.

    ``labels[i]`` indexes ``class_names`` (``"<Alphabet>/<character>"``, sorted by
    alphabet then character); ``paths`` names each image's file, as
    ``<zip file>/<member>`` for images read from a zip.
    """

    images: np.ndarray
    labels: np.ndarray
    alphabets: np.ndarray
    characters: np.ndarray
    drawers: np.ndarray
    paths: np.ndarray
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def alphabet_names(self) -> tuple[str, ...]:
        """The alphabets present, sorted."""
        return tuple(sorted(set(self.alphabets.tolist())))

    def __repr__(self) -> str:
        return (
            f"OmniglotData(n_images={len(self)}, n_classes={len(self.class_names)}, "
            f"image_shape={tuple(self.images.shape[1:])}, alphabets={self.alphabet_names})"
        )


def _entry_from_parts(
    parts: tuple[str, ...], member: str, source: Path, in_zip: bool
) -> _Entry | None:
    if len(parts) < 3 or not parts[-1].lower().endswith(".png") or parts[0] == "__MACOSX":
        return None
    alphabet, character, file_name = parts[-3:]
    return _Entry(alphabet, character, file_name, member, source, in_zip)


def _zip_entries(path: Path) -> list[_Entry]:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile as error:
        raise ValueError(f"cannot read Omniglot zip {path}: {error}") from error
    entries = (_entry_from_parts(PurePosixPath(n).parts, n, path, True) for n in names)
    return [entry for entry in entries if entry is not None]


def _folder_entries(folder: Path) -> list[_Entry]:
    entries = (
        _entry_from_parts(file.relative_to(folder).parts, str(file), folder, False)
        for file in folder.glob("*/*/*")
    )
    return [entry for entry in entries if entry is not None]


def _sources(data_root: Path) -> list[Path]:
    """Zips and extracted subset folders under ``data_root``, a folder preferred to its zip."""
    if data_root.is_file() and data_root.suffix.lower() == ".zip":
        return [data_root]
    if not data_root.is_dir():
        problem = "is not a folder or a .zip file" if data_root.exists() else "does not exist"
        raise FileNotFoundError(
            f"Omniglot data_root {data_root} {problem}; expected a folder holding "
            f"{' and '.join(EXPECTED_FILES)} (or those folders extracted)"
        )
    found: dict[str, Path] = {}
    for base in (data_root, data_root / "omniglot-py"):
        for zip_path in sorted(base.glob("images_*.zip")):
            found.setdefault(zip_path.stem, zip_path)
        for folder in sorted(p for p in base.glob("images_*") if p.is_dir()):
            found[folder.name] = folder
    if found:
        return [found[name] for name in sorted(found)]
    if any(data_root.glob("*/*/*.png")):
        return [data_root]
    raise FileNotFoundError(
        f"no Omniglot data in {data_root}: expected {' and '.join(EXPECTED_FILES)}, "
        "extracted images_* folders, or torchvision's omniglot-py/images_* folders"
    )


def _all_entries(data_root: Path) -> list[_Entry]:
    unique: dict[tuple[str, str, str], _Entry] = {}
    for source in _sources(data_root):
        entries = _zip_entries(source) if source.is_file() else _folder_entries(source)
        for entry in entries:
            unique.setdefault(entry.key, entry)
    if not unique:
        raise FileNotFoundError(f"no Omniglot PNG images found in {data_root}")
    return sorted(unique.values(), key=lambda entry: entry.key)


def omniglot_alphabets(data_root: str | Path) -> tuple[str, ...]:
    """The alphabets available under ``data_root``, sorted (reads no image)."""
    return tuple(sorted({entry.alphabet for entry in _all_entries(Path(data_root))}))


def _select(entries: list[_Entry], alphabets: str | Iterable[str] | None) -> list[_Entry]:
    if alphabets is None:
        return entries
    wanted = [alphabets] if isinstance(alphabets, str) else list(alphabets)
    available = sorted({entry.alphabet for entry in entries})
    unknown = [name for name in wanted if name not in available]
    if unknown or not wanted:
        raise ValueError(f"unknown Omniglot alphabets {unknown}; available: {available}")
    return [entry for entry in entries if entry.alphabet in set(wanted)]


def _drawer(entry: _Entry) -> int:
    match = _FILE_NAME.match(entry.file_name)
    if match is None:
        raise ValueError(
            f"Omniglot file {entry.member} is not named <id>_<drawer>.png; cannot tell its drawer"
        )
    return int(match.group(1))


def _display_path(entry: _Entry) -> str:
    return f"{entry.source}/{entry.member}" if entry.in_zip else entry.member


def _decode_all(
    entries: list[_Entry], size: tuple[int, int] | None, progress: bool
) -> list[np.ndarray]:
    images: list[np.ndarray | None] = [None] * len(entries)
    by_source: dict[tuple[Path, bool], list[int]] = {}
    for position, entry in enumerate(entries):
        by_source.setdefault((entry.source, entry.in_zip), []).append(position)
    with tqdm(
        total=len(entries), desc="Omniglot", unit="img", disable=None if progress else True
    ) as bar:
        for (source, in_zip), positions in by_source.items():
            archive = zipfile.ZipFile(source) if in_zip else None
            try:
                for position in positions:
                    entry = entries[position]
                    data = (
                        archive.read(entry.member) if archive else Path(entry.member).read_bytes()
                    )
                    images[position] = decode_bytes(data, _display_path(entry), size)
                    bar.update()
            finally:
                if archive is not None:
                    archive.close()
    return images  # type: ignore[return-value]


def load_omniglot(
    data_root: str | Path,
    alphabets: str | Iterable[str] | None = None,
    size: ImageSize | None = None,
    progress: bool = True,
) -> OmniglotData:
    """Read Omniglot images from ``data_root`` as uint8 ``[N, H, W]`` grayscale arrays.

    Pixels are as stored: 0 for strokes, 255 for the white background. ``alphabets``
    keeps only the named ones (labels then run 0..C-1 over the kept characters); ``size``
    (an int or ``(height, width)``) resizes bilinearly. ``progress`` shows a progress bar
    when writing to a terminal.
    """
    shape = check_size(size)
    entries = _select(_all_entries(Path(data_root)), alphabets)
    drawers = np.array([_drawer(entry) for entry in entries], dtype=np.int64)
    class_names = tuple(sorted({f"{e.alphabet}/{e.character}" for e in entries}))
    label_of = {name: label for label, name in enumerate(class_names)}
    images = _decode_all(entries, shape, progress)
    paths = [_display_path(entry) for entry in entries]
    return OmniglotData(
        images=stack_images(images, paths),
        labels=np.array([label_of[f"{e.alphabet}/{e.character}"] for e in entries], np.int64),
        alphabets=np.array([entry.alphabet for entry in entries]),
        characters=np.array([entry.character for entry in entries]),
        drawers=drawers,
        paths=np.array(paths),
        class_names=class_names,
    )
