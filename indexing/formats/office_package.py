"""Office Open XML packages opened safely: decrypted with a password when encrypted, refused when
their zip would expand past a budget (a zip bomb), and XML parsed without entity expansion.

DOCX, PPTX and XLSX files are zip archives of XML parts. Before any library unzips one, the sizes its
directory declares are checked here, so a few kilobytes that expand to gigabytes get a clear
per-file error instead of costing the parse worker its memory. An encrypted Office file is not a zip
but an OLE compound file holding the encrypted package; msoffcrypto-tool decrypts it with the
passwords the run was given (the same ones tried on encrypted PDFs).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from pathlib import Path

from lxml import etree

from spanqa.errors import DocumentError

# What one package may expand to. The largest real-world workbooks and decks are a few hundred MB
# uncompressed; a parse worker's address space is 4 GiB by default (ParseSettings.memory_mb).
MAX_UNCOMPRESSED_BYTES = 1 << 30
# XML compresses 10-30x; a part that claims far more than this is built to expand.
MAX_PART_RATIO = 500
MIN_RATIO_CHECK_BYTES = 10 << 20
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# Parses XML the package's own parts hold: no entities resolved (no "billion laughs"), no network.
SAFE_XML = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, remove_blank_text=False)


def package_bytes(path: Path, data: bytes, passwords: Sequence[str], kind: str) -> bytes:
    """The zip bytes of the Office file `data` (decrypted when it is encrypted), checked to expand
    within MAX_UNCOMPRESSED_BYTES; DocumentError saying what to do otherwise. `kind` names the
    format in messages ("a Word document")."""
    if data.startswith(OLE_MAGIC):
        data = decrypt_if_encrypted(path, data, passwords, kind)
        if data.startswith(OLE_MAGIC):
            raise DocumentError(path, f"not {kind}: a legacy binary Office file (.doc, .xls, .ppt) under this suffix")
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise DocumentError(path, f"not {kind}: not a zip package (damaged, or another format under this suffix)")
    check_expansion(path, data)
    return data


def check_expansion(path: Path, data: bytes) -> None:
    """DocumentError when the zip's parts would expand past the budget or by a bomb's ratio."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise DocumentError(path, f"corrupt zip package: {exc}") from exc
    total = sum(member.file_size for member in members)
    if total > MAX_UNCOMPRESSED_BYTES:
        raise DocumentError(
            path, f"expands to {total / 2**20:,.1f} MiB (over {MAX_UNCOMPRESSED_BYTES / 2**20:,.1f} MiB): "
            "a zip bomb or an unusually large file; not read"
        )
    for member in members:
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size > MIN_RATIO_CHECK_BYTES and ratio > MAX_PART_RATIO:
            raise DocumentError(
                path, f"part {member.filename!r} expands {ratio:,.0f}x (to {member.file_size >> 20:,} MiB): "
                "a zip bomb; not read"
            )


def encrypted_ole(data: bytes) -> bool:
    """Whether `data` is an OLE compound file msoffcrypto-tool knows as encrypted (False when it
    cannot tell: a damaged or unfamiliar file is then left to the program that reads it)."""
    # Imported here: only OLE files need it, and it pulls in cryptography's backends.
    import msoffcrypto

    try:
        return bool(msoffcrypto.OfficeFile(io.BytesIO(data)).is_encrypted())
    except Exception:  # noqa: BLE001 - a broken compound file raises many exception types
        return False


def decrypt_if_encrypted(path: Path, data: bytes, passwords: Sequence[str], kind: str) -> bytes:
    """The OLE compound file `data` decrypted when it is encrypted (an encrypted OOXML package, or a
    legacy .doc/.xls/.ppt), trying the default password ("VelvetSweatshop", Excel's "protected
    without a password") and then each of `passwords`; `data` itself when it is not encrypted."""
    # Imported here: only encrypted files need it, and it pulls in cryptography's backends.
    import msoffcrypto
    from msoffcrypto.exceptions import DecryptionError, InvalidKeyError

    try:
        office = msoffcrypto.OfficeFile(io.BytesIO(data))
        encrypted = office.is_encrypted()
    except Exception as exc:  # noqa: BLE001 - a broken compound file raises many exception types
        raise DocumentError(path, f"not {kind}: a compound (OLE) file that cannot be read ({exc})") from exc
    if not encrypted:
        return data
    candidates = ["VelvetSweatshop", *dict.fromkeys(p for p in passwords if p != "")]
    for password in candidates:
        try:
            office = msoffcrypto.OfficeFile(io.BytesIO(data))
            if office.format == "ooxml":  # the legacy formats check the password as they load it
                office.load_key(password=password, verify_password=True)
            else:
                office.load_key(password=password)
            out = io.BytesIO()
            office.decrypt(out)
            return out.getvalue()
        except (InvalidKeyError, DecryptionError):
            continue
        except Exception as exc:  # noqa: BLE001 - unusual schemes fail inside msoffcrypto's ciphers
            raise DocumentError(path, f"encrypted with a scheme that cannot be decrypted here ({exc})") from exc
    if len(candidates) == 1:
        raise DocumentError(path, "encrypted: password needed (give it with --password)")
    raise DocumentError(path, "encrypted: wrong password")


def parse_xml(path: Path, blob: bytes, part: str) -> etree._Element:
    """The root of the XML part `blob`, parsed without entity expansion; DocumentError naming the
    part when it is not well-formed."""
    try:
        return etree.fromstring(blob, SAFE_XML)
    except etree.XMLSyntaxError as exc:
        raise DocumentError(path, f"corrupt XML in {part}: {exc}") from exc
