"""Legacy and other office formats converted by LibreOffice headless into the OOXML twin spanqa reads:
.doc, .rtf and .odt become .docx, .xls, .xlsb and .ods become .xlsx, .ppt and .odp become .pptx.

LibreOffice (`soffice`, found on PATH) runs once per file with a profile of its own per parser
process (so parallel workers never share its lock), its macro security at "very high" with macros
disabled (a document's macros never run), killed with its parser process if that is killed (a file
over the time budget takes LibreOffice with it). An encrypted legacy file is decrypted first with the
run's passwords (msoffcrypto-tool), since LibreOffice headless cannot ask for one. Without LibreOffice
these files are reported as needing it, each on its own.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from spanqa.atomic_files import remove_if_owner_ended
from spanqa.errors import DocumentError
from spanqa.indexing.formats.office_package import OLE_MAGIC, decrypt_if_encrypted, encrypted_ole

# Suffix read -> (LibreOffice filter for the OOXML twin, its suffix, what the file is called in messages).
CONVERTED = {
    ".doc": ("docx:MS Word 2007 XML", ".docx", "a Word 97-2003 document"),
    ".rtf": ("docx:MS Word 2007 XML", ".docx", "an RTF document"),
    ".odt": ("docx:MS Word 2007 XML", ".docx", "an OpenDocument text"),
    ".xls": ("xlsx:Calc MS Excel 2007 XML", ".xlsx", "an Excel 97-2003 workbook"),
    ".xlsb": ("xlsx:Calc MS Excel 2007 XML", ".xlsx", "an Excel binary workbook"),
    ".ods": ("xlsx:Calc MS Excel 2007 XML", ".xlsx", "an OpenDocument spreadsheet"),
    ".ppt": ("pptx:Impress MS PowerPoint 2007 XML", ".pptx", "a PowerPoint 97-2003 deck"),
    ".odp": ("pptx:Impress MS PowerPoint 2007 XML", ".pptx", "an OpenDocument presentation"),
}
CONVERTED_SUFFIXES = tuple(CONVERTED)
# What one conversion may take. A parse worker's own budget (ParseSettings.timeout_s, 120 s by default)
# still applies: when it is smaller, the worker is stopped first and LibreOffice with it.
CONVERT_TIMEOUT_S = 300.0
# The profile's settings: macros disabled and the highest macro security.
PROFILE_SETTINGS = """<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry" xmlns:xs="http://www.w3.org/2001/XMLSchema"
           xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<item oor:path="/org.openoffice.Office.Common/Security/Scripting"><prop oor:name="MacroSecurityLevel" oor:op="fuse"><value>3</value></prop></item>
<item oor:path="/org.openoffice.Office.Common/Security/Scripting"><prop oor:name="DisableMacrosExecution" oor:op="fuse"><value>true</value></prop></item>
<item oor:path="/org.openoffice.Office.Common/Misc"><prop oor:name="FirstRun" oor:op="fuse"><value>false</value></prop></item>
</oor:items>
"""
PR_SET_PDEATHSIG = 1
# LibreOffice's exit status after it has initialised a new user profile: run it again.
RESTART_EXIT_CODE = 81


def soffice() -> str | None:
    """The LibreOffice program to run: `soffice` on PATH (its `soffice.bin` when beside it, so that
    no launcher process stands between spanqa and the converter), or None."""
    found = shutil.which("soffice") or shutil.which("libreoffice")
    if found is None:
        return None
    binary = Path(found).resolve().with_name("soffice.bin")
    return str(binary) if binary.is_file() else found


def convert(path: Path, data: bytes, passwords: Sequence[str]) -> tuple[bytes, str]:
    """The OOXML bytes LibreOffice makes of the file `data` named `path`, and their suffix."""
    suffix = path.suffix.lower()
    output_filter, target_suffix, kind = CONVERTED[suffix]
    program = soffice()
    if program is None:
        raise DocumentError(path, f"{kind}: needs LibreOffice to be read (install it so that 'soffice' is on PATH)")
    if data.startswith(OLE_MAGIC) and encrypted_ole(data):
        data = decrypt_if_encrypted(path, data, passwords, kind)
    with tempfile.TemporaryDirectory(prefix="spanqa-convert-") as work:
        source = Path(work) / f"input{suffix}"
        source.write_bytes(data)
        outdir = Path(work) / "out"
        command = [
            program, f"-env:UserInstallation={profile_dir().as_uri()}", "--headless", "--invisible",
            "--norestore", "--nolockcheck", "--nodefault", "--nologo",
            "--convert-to", output_filter, "--outdir", str(outdir), str(source),
        ]
        run_converter(path, command, kind)
        produced = outdir / f"input{target_suffix}"
        if not produced.is_file():
            raise DocumentError(path, f"{kind}: LibreOffice could not read it (damaged, or another format)")
        return produced.read_bytes(), target_suffix


def run_converter(path: Path, command: list[str], kind: str) -> None:
    """Runs LibreOffice (twice when it sets up a new profile: it then exits with RESTART_EXIT_CODE
    before converting); it dies with this process, and is stopped (its whole group) after the timeout."""
    if run_once(path, command, kind) == RESTART_EXIT_CODE:
        run_once(path, command, kind)


def run_once(path: Path, command: list[str], kind: str) -> int:
    try:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True, preexec_fn=die_with_parent,  # noqa: PLW1509 - only sets a signal
        )
    except OSError as exc:
        raise DocumentError(path, f"{kind}: LibreOffice did not start ({exc.strerror or exc})") from exc
    try:
        process.communicate(timeout=CONVERT_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise DocumentError(path, f"{kind}: LibreOffice took over {CONVERT_TIMEOUT_S:.0f} s to convert it") from exc
    return process.returncode


def die_with_parent() -> None:
    """In the child before exec: be killed when the parser process that started it dies (Linux)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass  # not Linux: the timeout still stops it


def profile_dir() -> Path:
    """This process's LibreOffice profile (made once, with macros off); one per process, so workers
    converting at the same time do not wait on each other's profile lock."""
    prefix = f"spanqa-libreoffice-{os.getuid()}-"
    profile = Path(tempfile.gettempdir()) / f"{prefix}{os.getpid()}"
    settings = profile / "user" / "registrymodifications.xcu"
    if not settings.is_file():
        remove_orphaned_profiles(profile.parent, prefix)
        settings.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        settings.write_text(PROFILE_SETTINGS, encoding="utf-8")
        # Under a MB that LibreOffice fills on first use; removed when this process ends normally (a
        # parser process killed or ended with os._exit leaves it to the next process's clean-up).
        atexit.register(shutil.rmtree, profile, True)
    return profile


def remove_orphaned_profiles(folder: Path, prefix: str) -> None:
    """Removes the profiles of processes that no longer run."""
    for candidate in folder.glob(f"{prefix}*"):
        remove_if_owner_ended(candidate, candidate.name.removeprefix(prefix))
