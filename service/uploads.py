"""Receiving uploaded files: streamed to disk with a size cap each, typed by content, stored by hash.

An upload's name is never used as a path: the file is stored as `<uploads>/<folder>/<sha256>.<type>`
(the folder is an optional form field made of plain path segments, so scoped tokens can cover
uploads), and the name it was uploaded under is kept, sanitised, for display only. Its type comes
from its bytes (a PDF header, HTML markup, UTF-8 text), never from the name alone: a ZIP named `.pdf` is
refused with the reason, a text file named `.pdf` is indexed as text. A Word, PowerPoint or Excel file
is a ZIP (an OLE file when encrypted) named with its suffix; its reader then checks its parts.

A disk that fails a write (full, or an I/O error) is a `StorageError`, never a "malformed body":
whatever the request had staged is removed, and its message holds no server path.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import unicodedata
from collections.abc import AsyncIterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from spanqa.atomic_files import fsync_file
from spanqa.errors import ConfigError, StorageError
from spanqa.file_modes import private_folder, private_opener, tighten
from spanqa.indexing.formats.extraction import OFFICE_SUFFIXES, PDF_HEADER_WINDOW

SNIFF_BYTES = 4096
MAX_NAME_CHARS = 200
MAX_FIELD_BYTES = 1024  # form fields other than files (the folder)
FOLDER_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_FOLDER_DEPTH = 8
STAGING = ".staging"

# Magic numbers of common files people upload by mistake, to say what a refused file is.
KNOWN_BINARIES = (
    (b"PK\x03\x04", "a ZIP archive (an Office file needs its suffix: .docx, .pptx, .xlsx, ...)"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x7fELF", "an executable"),
    (b"MZ", "a Windows executable"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\xd0\xcf\x11\xe0", "a legacy Office file (.doc, .xls, .ppt) or Outlook message"),
)
HTML_MARKERS = (b"<!doctype html", b"<html", b"<head", b"<body")
OFFICE_MAGICS = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0")
INDEXED_TYPES = "PDF, text, Markdown, HTML, Word, PowerPoint and Excel"


class UploadRejected(Exception):
    """The request as a whole cannot be taken (not multipart, too large, too many files)."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


def display_name(raw: str) -> str:
    """A name safe to show and to put in a header: the last path segment, without control characters."""
    name = unicodedata.normalize("NFC", raw).replace("\\", "/").split("/")[-1]
    name = "".join(" " if unicodedata.category(char).startswith(("C", "Z")) else char for char in name)
    name = re.sub(r"\s+", " ", name).strip(" .")
    if len(name) > MAX_NAME_CHARS:
        stem, dot, suffix = name.rpartition(".")
        keep = suffix if dot and len(suffix) <= 10 else ""
        name = name[: MAX_NAME_CHARS - len(keep) - 1].rstrip() + ("." + keep if keep else "")
    return name if name != "" else "upload"


def check_folder(folder: str | None) -> tuple[str, ...]:
    """The upload folder's segments; a ConfigError for anything but plain names (no '..', no '/x')."""
    if folder is None or folder.strip("/") == "":
        return ()
    segments = tuple(folder.strip("/").split("/"))
    if len(segments) > MAX_FOLDER_DEPTH or not all(FOLDER_SEGMENT.fullmatch(segment) for segment in segments):
        raise ConfigError(
            f"folder {folder!r} must be up to {MAX_FOLDER_DEPTH} names of letters, digits, '.', '_' or '-' "
            "separated by '/' (e.g. 'hr/policies')"
        )
    if any(set(segment) == {"."} for segment in segments):
        raise ConfigError(f"folder {folder!r} may not hold '.' or '..'")
    return segments


def sniff_type(head: bytes, name: str) -> tuple[str | None, str]:
    """(suffix spanqa indexes the bytes as, or None; why not) from a file's first bytes."""
    if b"%PDF" in head[:PDF_HEADER_WINDOW]:
        return ".pdf", ""
    suffix = Path(name).suffix.lower()
    if suffix in OFFICE_SUFFIXES and head.startswith(OFFICE_MAGICS):
        return suffix, ""
    for magic, what in KNOWN_BINARIES:
        if head.startswith(magic):
            return None, f"unsupported content: {what} (spanqa indexes {INDEXED_TYPES})"
    if b"\x00" in head:
        return None, f"unsupported content: binary data (spanqa indexes {INDEXED_TYPES})"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # The sniffed head may end inside a multi-byte character; anything earlier is not UTF-8.
        if exc.start < len(head) - 3:
            return None, f"unsupported content: not UTF-8 text (spanqa indexes {INDEXED_TYPES})"
    lowered = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if lowered.startswith(HTML_MARKERS) or any(marker in lowered[:SNIFF_BYTES] for marker in (b"<html", b"<body")):
        return ".html", ""
    if name.lower().endswith((".md", ".markdown")):
        return ".md", ""
    return ".txt", ""


@dataclass
class ReceivedFile:
    """One uploaded file: stored at `path` (None when refused, with `problem` saying why)."""

    name: str
    size: int = 0
    sha256: str = ""
    path: Path | None = None
    problem: str | None = None


@dataclass
class _Part:
    name: str = ""
    filename: str | None = None
    staging: Path | None = None
    handle: object = None
    digest: object = field(default_factory=hashlib.sha256)
    head: bytes = b""
    size: int = 0
    too_large: bool = False
    value: bytes = b""


class UploadReceiver:
    """Parses one multipart body as it streams in; files go to a staging folder under `uploads_dir`."""

    def __init__(self, uploads_dir: Path, max_file_bytes: int, max_files: int):
        self.uploads_dir = uploads_dir
        self.max_file_bytes = max_file_bytes
        self.max_files = max_files
        self.files: list[ReceivedFile] = []
        self.fields: dict[str, str] = {}
        self._parts: list[_Part] = []
        self._part: _Part | None = None
        self._header_field = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._staging = uploads_dir / STAGING
        try:
            # Owner-only (issue 24): the uploads folder 0700 (one made before is tightened), files 0600.
            private_folder(uploads_dir)
            tighten([uploads_dir])
            private_folder(self._staging)
        except OSError as exc:
            raise StorageError("the upload could not be received", exc) from exc

    async def receive(self, content_type: str, chunks: AsyncIterator[bytes]) -> None:
        kind, options = parse_options_header(content_type)
        boundary = options.get(b"boundary")
        if kind != b"multipart/form-data" or not boundary:
            raise UploadRejected(415, "upload files as multipart/form-data with one 'files' field per file")
        parser = MultipartParser(boundary, {
            "on_part_begin": self._begin, "on_header_field": self._header_field_data,
            "on_header_value": self._header_value_data, "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished, "on_part_data": self._data, "on_part_end": self._end,
        })
        try:
            async for chunk in chunks:
                parser.write(chunk)
            parser.finalize()
        except UploadRejected:
            self.discard()
            raise
        except OSError as exc:  # writing a staged file: the server's disk, not the client's body
            self.discard()
            raise StorageError("the upload could not be received", exc) from exc
        except Exception as exc:  # noqa: BLE001 - a malformed body (python-multipart's words, no server path)
            self.discard()
            reason = f": {exc}" if isinstance(exc, FormParserError) else ""
            raise UploadRejected(400, f"malformed multipart body{reason}") from exc

    def discard(self) -> None:
        """Removes whatever was staged (a refused request keeps nothing)."""
        for part in self._parts:
            self._close(part, keep=False)

    # -- parser callbacks ------------------------------------------------------------------------

    def _begin(self) -> None:
        self._part = _Part()
        self._parts.append(self._part)
        self._headers = {}

    def _header_field_data(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_field.lower()] = self._header_value
        self._header_field, self._header_value = b"", b""

    def _headers_finished(self) -> None:
        part = self._part
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        part.name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        if filename is not None:
            part.filename = filename.decode("utf-8", "replace")
            if part.name == "files":
                if sum(1 for p in self._parts if p.filename is not None and p.name == "files") > self.max_files:
                    raise UploadRejected(413, f"at most {self.max_files} files per upload: send the rest in another")
                part.staging = self._staging / secrets.token_hex(16)
                part.handle = open(part.staging, "wb", opener=private_opener)

    def _data(self, data: bytes, start: int, end: int) -> None:
        part = self._part
        piece = data[start:end]
        part.size += len(piece)
        if part.filename is None:
            if part.size > MAX_FIELD_BYTES:
                raise UploadRejected(413, f"form field {part.name!r} is over {MAX_FIELD_BYTES} bytes")
            part.value += piece
            return
        if part.handle is None or part.too_large:
            return
        if part.size > self.max_file_bytes:
            # Keep reading the body (the client is still sending it) but store nothing more of this file.
            part.too_large = True
            self._close(part, keep=False)
            return
        if len(part.head) < SNIFF_BYTES:
            part.head += piece[: SNIFF_BYTES - len(part.head)]
        part.digest.update(piece)
        part.handle.write(piece)

    def _end(self) -> None:
        part = self._part
        if part.filename is None:
            self.fields[part.name] = part.value.decode("utf-8", "replace")
            return
        if part.name != "files":
            return
        received = ReceivedFile(name=display_name(part.filename), size=part.size)
        self.files.append(received)
        if part.too_large:
            limit = self.max_file_bytes / 1024 / 1024
            received.problem = f"too large: over {limit:g} MB (the server's --max-file-mb)"
            return
        problem = "empty file (0 bytes)" if part.size == 0 else None
        suffix = None
        if problem is None:
            suffix, problem = sniff_type(part.head, part.filename)
        if suffix is None:
            received.problem = problem
            self._close(part, keep=False)
            return
        self._close(part, keep=True)
        received.sha256 = part.digest.hexdigest()
        received.path = part.staging.with_suffix(suffix)
        os.replace(part.staging, received.path)
        part.staging = received.path

    def _close(self, part: _Part, keep: bool) -> None:
        """Closes the part's staged file: kept on disk (flushed and synced, errors raised), or removed
        (errors ignored: a refused request must still be answered; startup clears the staging folder)."""
        handle, part.handle = part.handle, None
        if handle is not None:
            try:
                if keep:
                    handle.flush()
                    os.fsync(handle.fileno())  # on disk before a job journaled with it is answered
            finally:
                try:
                    handle.close()
                except OSError:
                    if keep:
                        raise
        if not keep and part.staging is not None:
            with suppress(OSError):
                part.staging.unlink(missing_ok=True)
            part.staging = None


def store_received(received: ReceivedFile, uploads_dir: Path, folder: tuple[str, ...]) -> tuple[Path, bool]:
    """Moves a staged file to its place, `<uploads>/<folder>/<sha256><suffix>`: (that path, whether
    this call put it there). A file already there has the same content and may belong to another
    job: it is kept as it is and the staged copy is dropped, so undoing this upload never touches it."""
    if received.path is None:
        raise ValueError("a refused upload has no file to store")
    target_dir = private_folder(uploads_dir.joinpath(*folder))
    target = target_dir / f"{received.sha256}{received.path.suffix}"
    created = not target.exists()
    if created:
        os.replace(received.path, target)
        fsync_file(target_dir)  # the rename made durable; a failing disk raises (unlike fsync_directory)
    else:
        received.path.unlink()
    received.path = target
    return target, created


def discard_staged(received: list[ReceivedFile]) -> None:
    """Removes the staged files of a request that is refused after it was received."""
    for item in received:
        if item.path is not None and item.path.parent.name == STAGING:
            with suppress(OSError):
                item.path.unlink(missing_ok=True)
