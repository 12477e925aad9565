"""Local files and URLs as import sources name them: checks, ids from names, folder walks."""

from __future__ import annotations

import errno
import os
import re
import unicodedata
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

from ....errors import IfaError
from .core import Issue

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
# http(s) is what `ifa fetch` downloads; any other scheme (ftp:, file:, s3:, data:) is named.
SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):(//)?")
OTHER_SCHEMES = {"file", "ftp", "ftps", "data", "s3", "gs", "sftp", "smb", "blob"}


def check_folder(folder: Path, option: str) -> Path:
    """`folder` when it is a folder; an IfaError saying what it is instead."""
    if not folder.exists():
        raise IfaError(f"{option}{folder} does not exist.")
    if not folder.is_dir():
        raise IfaError(f"{option}{folder} is a file, not a folder of images.")
    return folder


def check_file(file: Path) -> Path:
    """`file` when it is a file that exists; an IfaError saying what it is instead."""
    if not file.exists():
        if file.is_symlink():
            raise IfaError(f"{file} is a symlink to nothing (or a symlink loop); give the file itself.")
        raise IfaError(f"{file} does not exist.")
    if file.is_dir():
        raise IfaError(f"{file} is a folder; give the file inside it (ifa import folder imports a folder of images).")
    return file


def usable_file(path: Path) -> tuple[Path, str]:
    """(absolute path, "" when it is a readable regular file or else what is wrong). A name
    spelled in the other Unicode normal form (NFC/NFD: macOS writes NFD) is found too."""
    path = Path(os.path.abspath(path))
    if not os.path.lexists(path):
        for form in ("NFC", "NFD"):
            other = Path(unicodedata.normalize(form, str(path)))
            if os.path.lexists(other):
                path = other
                break
        else:
            return path, f"{path} does not exist"
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return path, f"{path} is a symlink loop"
        if os.path.islink(path):
            return path, f"{path} is a symlink to {os.readlink(path)}, which does not exist"
        return path, f"{path} cannot be read: {exc.strerror}"
    if os.path.isdir(path):
        return path, f"{path} is a folder, not an image file"
    if not os.path.isfile(path):
        return path, f"{path} is not a regular file"
    return Path(os.path.realpath(path)), ""


def inside(real: Path | str, root: Path | str) -> bool:
    """Whether the real path `real` lies in the folder `root` (itself a real path)."""
    return os.path.commonpath([str(real), str(root)]) == str(root)


def link_outside(path: str, real: Path | str, root: Path) -> Issue | None:
    """The problem when `path`'s real file leaves `root` (the imported folder): it is refused so
    that no path outside what was imported (a link to /etc/passwd) reaches the ledger."""
    root = os.path.realpath(root)
    if inside(real, root):
        return None
    return Issue(stem(path), "link-outside", f"{path} resolves to {real}, outside {root}; its path was not stored")


def walk_images(folder: Path) -> Iterator[str | Issue]:
    """Image files under `folder` (their real paths are inside it), and an Issue for each symlink
    loop, link to nothing or link out of the folder (os.walk does not follow linked folders, so a
    looping folder link is never entered)."""
    for dirpath, _, names in os.walk(folder):
        for name in names:
            if Path(name).suffix.lower() in IMAGE_SUFFIXES:
                path = os.path.join(dirpath, name)
                real, why = usable_file(Path(path))
                if why:
                    yield Issue(stem(path), "unreadable-path", why)
                    continue
                yield link_outside(path, real, folder) or path


def stem(where: str) -> str:
    """The id a path or URL gives: its file name without extension, in Unicode NFC, so
    a name spelled NFD (as macOS file systems store it) is the same id."""
    return unicodedata.normalize("NFC", Path(urlparse(where).path if is_url(where) else where).stem)


def is_url(value: str) -> bool:
    return value[:8].lower().startswith(("http://", "https://"))  # schemes are case-insensitive (RFC 3986)
