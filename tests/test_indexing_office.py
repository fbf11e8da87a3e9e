"""Word, PowerPoint and Excel files to page texts: what each format yields (files written here with
python-docx, python-pptx and openpyxl), tables as header-named cells, and every hostile file's error."""

from __future__ import annotations

import io
import os
import subprocess
import zipfile
from pathlib import Path

import docx
import openpyxl
import pptx
import pytest
from docx.oxml.ns import qn
from docx.oxml.parser import OxmlElement
from msoffcrypto.format.ooxml import OOXMLFile
from pptx.util import Inches

from spanqa.errors import DocumentError
from spanqa.indexing.formats import office_convert, office_package
from spanqa.indexing.formats.extraction import read_document, read_pages
from spanqa.indexing.formats.tables import table_lines, trim_table
from spanqa.indexing.ingest.parsing import ParseTask, parse_file
from spanqa.indexing.ingest.workers import ParsePool


def reason_for(path: Path, passwords: tuple[str, ...] = ()) -> str:
    with pytest.raises(DocumentError) as caught:
        read_document(path, passwords=passwords)
    assert caught.value.path == path
    return caught.value.reason


# tables (pure)


def test_table_rows_name_each_cell_by_its_column_header():
    rows = [["Name", "Budget", "Hours"], ["Patrick", "300", "20"], ["Ines", "", "35"]]
    assert table_lines(rows) == [
        "Name; Budget; Hours", "Name: Patrick; Budget: 300; Hours: 20", "Name: Ines; Hours: 35",
    ]


def test_table_without_headers_to_name_reads_its_cells():
    assert table_lines([["only", "one row"]]) == ["only; one row"]
    assert table_lines([["a"], [""], ["b"]]) == ["a", "b"]
    assert table_lines([["", ""], [" ", ""]]) == []


def test_trim_table_drops_empty_rows_and_columns_and_joins_cell_lines():
    assert trim_table([["a", "", "b\n c"], ["", "", ""], ["d"]]) == [["a", "b c"], ["d", ""]]


# Word


def write_docx(path: Path) -> Path:
    document = docx.Document()
    document.add_heading("Supplier contract", level=1)
    document.add_paragraph("The contract was signed in Oslo on 4 May 2021.")
    table = document.add_table(rows=3, cols=3)
    for row, values in zip(table.rows, [("Name", "Budget", "Hours"), ("Patrick", "300", "20"), ("Ines", "450", "35")]):
        for cell, value in zip(row.cells, values):
            cell.text = value
    tracked = document.add_paragraph("Payment is due in ")
    inserted = OxmlElement("w:ins")
    inserted.set(qn("w:id"), "1")
    inserted.set(qn("w:author"), "A")
    inserted.append(run_element("30 days"))
    deleted = OxmlElement("w:del")
    deleted.set(qn("w:id"), "2")
    deleted.set(qn("w:author"), "A")
    deleted_run = OxmlElement("w:r")
    deleted_text = OxmlElement("w:delText")
    deleted_text.text = "90 days"
    deleted_run.append(deleted_text)
    deleted.append(deleted_run)
    tracked._p.append(deleted)
    tracked._p.append(inserted)
    document.sections[0].header.paragraphs[0].text = "Company confidential"
    document.save(path)
    return path


def run_element(text: str) -> OxmlElement:
    run = OxmlElement("w:r")
    element = OxmlElement("w:t")
    element.text = text
    run.append(element)
    return run


def test_docx_reads_body_tables_tracked_changes_and_headers_in_order(tmp_path):
    [page] = read_pages(write_docx(tmp_path / "contract.docx"))
    assert page.splitlines() == [
        "Supplier contract",
        "The contract was signed in Oslo on 4 May 2021.",
        "Name; Budget; Hours",
        "Name: Patrick; Budget: 300; Hours: 20",
        "Name: Ines; Budget: 450; Hours: 35",
        "Payment is due in 30 days",
        "Company confidential",
    ]


def test_docx_merged_cells_keep_later_cells_under_their_headers(tmp_path):
    document = docx.Document()
    table = document.add_table(rows=2, cols=3)
    for cell, value in zip(table.rows[0].cells, ("Region", "Q1", "Q2")):
        cell.text = value
    merged = table.cell(1, 0).merge(table.cell(1, 1))
    merged.text = "North"
    table.cell(1, 2).text = "75"
    document.save(tmp_path / "merged.docx")
    [page] = read_pages(tmp_path / "merged.docx")
    assert page.splitlines() == ["Region; Q1; Q2", "Region: North; Q2: 75"]


def test_docm_and_dotx_read_like_docx(tmp_path):
    source = write_docx(tmp_path / "a.docx").read_bytes()
    for suffix, content_type in (
        (".docm", "application/vnd.ms-word.document.macroEnabled.main+xml"),
        (".dotx", "application/vnd.openxmlformats-officedocument.wordprocessingml.template.main+xml"),
    ):
        path = tmp_path / f"b{suffix}"
        path.write_bytes(replace_part(source, "[Content_Types].xml", lambda xml, ct=content_type: xml.replace(
            b"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml", ct.encode())))
        assert "signed in Oslo" in read_pages(path)[0]


def replace_part(package: bytes, name: str, change) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(package)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            data = source.read(item.filename)
            target.writestr(item.filename, change(data) if item.filename == name else data)
    return out.getvalue()


# PowerPoint


def test_pptx_one_page_per_slide_with_title_tables_groups_and_notes(tmp_path):
    deck = pptx.Presentation()
    first = deck.slides.add_slide(deck.slide_layouts[1])
    first.shapes.title.text = "Quarterly results"
    first.placeholders[1].text = "Revenue grew in every region"
    first.notes_slide.notes_text_frame.text = "Mention the Bergen office."
    second = deck.slides.add_slide(deck.slide_layouts[5])
    second.shapes.title.text = "By region"
    table = second.shapes.add_table(2, 2, Inches(1), Inches(2), Inches(4), Inches(1)).table
    for (row, column), value in {(0, 0): "Region", (0, 1): "Revenue", (1, 0): "North", (1, 1): "1.2 M"}.items():
        table.cell(row, column).text = value
    group = second.shapes.add_group_shape()
    group.shapes.add_textbox(Inches(1), Inches(4), Inches(2), Inches(1)).text_frame.text = "Grouped remark"
    deck.slides.add_slide(deck.slide_layouts[6])  # a blank slide keeps its number
    deck.save(tmp_path / "results.pptx")

    pages = read_pages(tmp_path / "results.pptx")
    assert pages == [
        "Quarterly results\nRevenue grew in every region\nNotes:\nMention the Bergen office.",
        "By region\nRegion; Revenue\nRegion: North; Revenue: 1.2 M\nGrouped remark",
        "",
    ]


# Excel


def test_xlsx_one_page_per_sheet_with_header_named_cells_and_formats(tmp_path):
    import datetime as dt

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Budget"
    sheet.append(["Name", "Amount", "Share", "Due"])
    sheet.append(["Patrick", 300.0, 0.125, dt.datetime(2024, 5, 1)])
    sheet["C2"].number_format = "0.0%"
    workbook.create_sheet("Empty")
    workbook.save(tmp_path / "budget.xlsx")

    assert read_pages(tmp_path / "budget.xlsx") == [
        "Budget\nName; Amount; Share; Due\nName: Patrick; Amount: 300; Share: 12.5%; Due: 2024-05-01",
        "Empty",
    ]


def test_xlsx_rows_past_the_cap_are_not_read(tmp_path, monkeypatch):
    workbook = openpyxl.Workbook()
    for number in range(10):
        workbook.active.append([f"row {number}"])
    workbook.save(tmp_path / "long.xlsx")
    from spanqa.indexing.formats import office_xlsx

    monkeypatch.setattr(office_xlsx, "MAX_SHEET_ROWS", 4)
    assert read_pages(tmp_path / "long.xlsx") == ["Sheet\nrow 0\nrow 1\nrow 2\nrow 3"]


# Hostile and broken files


def test_encrypted_office_file_opens_with_its_password_only(tmp_path):
    plain = write_docx(tmp_path / "plain.docx")
    encrypted = tmp_path / "locked.docx"
    with open(plain, "rb") as source, open(encrypted, "wb") as target:
        OOXMLFile(source).encrypt("s3cret", target)

    assert reason_for(encrypted) == "encrypted: password needed (give it with --password)"
    assert reason_for(encrypted, ("wrong",)) == "encrypted: wrong password"
    assert "signed in Oslo" in read_document(encrypted, passwords=("wrong", "s3cret")).pages[0]


def test_zip_bomb_is_refused_before_it_is_expanded(tmp_path, monkeypatch):
    source = write_docx(tmp_path / "a.docx").read_bytes()
    bomb = tmp_path / "bomb.docx"
    bomb.write_bytes(source)
    with zipfile.ZipFile(bomb, "a", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/media/zeros.bin", bytes(40 << 20))  # 40 MiB of zeros: about 1000x
    assert "a zip bomb; not read" in reason_for(bomb)

    monkeypatch.setattr(office_package, "MAX_UNCOMPRESSED_BYTES", 1000)
    assert reason_for(tmp_path / "a.docx").startswith("expands to 0.8 MiB (over 0.0 MiB)")


def test_xml_entities_are_not_expanded(tmp_path):
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE w:document [<!ENTITY a "lol">'
        + b"".join(b'<!ENTITY %s "%s">' % (bytes([98 + i]), (b"&" + bytes([97 + i]) + b";") * 10) for i in range(8))
        + b"]>"
    )

    def poison(xml: bytes) -> bytes:
        body = xml.split(b"?>", 1)[1]
        return laughs + body.replace(b"The contract was signed", b"&i; The contract was signed")

    path = tmp_path / "laughs.docx"
    path.write_bytes(replace_part(write_docx(tmp_path / "a.docx").read_bytes(), "word/document.xml", poison))
    try:
        text = read_pages(path)[0]
    except DocumentError as error:
        assert error.reason.startswith("corrupt Word document")
    else:
        assert "lollol" not in text and len(text) < 1000


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("notzip.docx", b"this is not a zip file", "not a Word document: not a zip package"),
        ("truncated.xlsx", None, "not an Excel workbook: not a zip package"),
        ("legacy.pptx", office_package.OLE_MAGIC + bytes(600), "not a PowerPoint deck: a compound (OLE) file that cannot be read"),
    ],
)
def test_broken_office_files_get_a_reason(tmp_path, name, data, reason):
    path = tmp_path / name
    if data is None:
        buffer = io.BytesIO()
        openpyxl.Workbook().save(buffer)
        data = buffer.getvalue()[:-200]
    path.write_bytes(data)
    assert reason in reason_for(path)


def test_office_file_without_text_is_reported_and_a_good_one_chunks(tmp_path):
    docx.Document().save(tmp_path / "blank.docx")
    assert reason_for(tmp_path / "blank.docx") == "no text"
    parsed = parse_file(ParseTask(str(write_docx(tmp_path / "contract.docx"))))
    assert parsed.ok and parsed.page_count == 1
    assert any("Name: Patrick; Budget: 300" in chunk.content for chunk in parsed.chunks)


# Legacy and OpenDocument files, through LibreOffice


needs_libreoffice = pytest.mark.skipif(office_convert.soffice() is None, reason="LibreOffice (soffice) not installed")


def test_legacy_file_without_libreoffice_says_it_needs_it(tmp_path, monkeypatch):
    monkeypatch.setattr(office_convert, "soffice", lambda: None)
    (tmp_path / "old.doc").write_bytes(office_package.OLE_MAGIC + bytes(600))
    assert reason_for(tmp_path / "old.doc") == (
        "a Word 97-2003 document: needs LibreOffice to be read (install it so that 'soffice' is on PATH)"
    )


def test_converted_suffixes_are_the_ones_extraction_routes_to_libreoffice():
    from spanqa.indexing.formats.extraction import CONVERTED_SUFFIXES

    assert set(CONVERTED_SUFFIXES) == set(office_convert.CONVERTED)


@needs_libreoffice
def test_doc_and_odt_read_as_the_docx_they_were_saved_from(tmp_path):
    source = write_docx(tmp_path / "contract.docx")
    for target in ("doc", "odt"):
        command = [office_convert.soffice(), f"-env:UserInstallation={(tmp_path / 'profile').as_uri()}", "--headless",
                   "--convert-to", target, "--outdir", str(tmp_path), str(source)]
        process = subprocess.run(command, capture_output=True, timeout=300, check=False)
        if process.returncode == office_convert.RESTART_EXIT_CODE:  # it made the new profile
            process = subprocess.run(command, capture_output=True, timeout=300, check=False)
        assert process.returncode == 0, process.stderr
        [page] = read_pages(tmp_path / f"contract.{target}")
        assert "The contract was signed in Oslo on 4 May 2021." in page
        assert "Name: Patrick; Budget: 300; Hours: 20" in page


@needs_libreoffice
def test_a_conversion_over_its_time_is_stopped_with_libreoffice(tmp_path, monkeypatch):
    monkeypatch.setattr(office_convert, "CONVERT_TIMEOUT_S", 0.05)
    (tmp_path / "slow.rtf").write_text(r"{\rtf1\ansi Hello from RTF.}", encoding="ascii")
    assert reason_for(tmp_path / "slow.rtf") == "an RTF document: LibreOffice took over 0 s to convert it"
    running = [
        pid for pid in os.listdir("/proc")
        if pid.isdigit() and "spanqa-convert-" in read_cmdline(pid)
    ]
    assert running == []


def test_libreoffice_profiles_of_ended_processes_are_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(office_convert.tempfile, "gettempdir", lambda: str(tmp_path))
    prefix = f"spanqa-libreoffice-{os.getuid()}-"
    ended = tmp_path / f"{prefix}4999999"  # above Linux's largest pid
    (ended / "user").mkdir(parents=True)
    alive = tmp_path / f"{prefix}{os.getppid()}"
    alive.mkdir()
    profile = office_convert.profile_dir()
    assert profile == tmp_path / f"{prefix}{os.getpid()}"
    assert "DisableMacrosExecution" in (profile / "user" / "registrymodifications.xcu").read_text(encoding="utf-8")
    assert not ended.exists() and alive.exists()


def read_cmdline(pid: str) -> str:
    try:
        return (Path("/proc") / pid / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


# The shared Apache POI files


SHARED_OFFICE = Path(__file__).resolve().parents[2] / "shared" / "data" / "office"


@pytest.mark.skipif(not SHARED_OFFICE.is_dir(), reason="needs ../shared/data/office")
def test_every_shared_office_file_gets_a_status_and_none_crashes():
    """The 83 Apache POI files in parser processes, as `spanqa index` reads them: the real-world
    files read with their text, the encrypted workbook with its password, every other file a reason
    written for it (no crash, no time-out, no exception spanqa did not expect)."""
    import json

    manifest = json.loads((SHARED_OFFICE / "manifest.json").read_text(encoding="utf-8"))
    tasks = [
        ParseTask(str(SHARED_OFFICE / entry["file"]), passwords=tuple(filter(None, [entry.get("password")])))
        for entry in manifest
    ]
    results = {entry["file"]: result for entry, result in zip(manifest, ParsePool(workers=2).map(tasks))}
    assert len(results) == 83
    for entry in manifest:
        result = results[entry["file"]]
        if not result.ok:
            assert not result.reason.startswith(("parser crashed", "timed out", "out of memory", "cannot parse:")), (
                entry["file"], result.reason,
            )
        ooxml = Path(entry["file"]).suffix.lower() in (".docx", ".docm", ".dotx", ".pptx", ".pptm", ".xlsx", ".xlsm")
        if entry["category"] == "real-world" and ooxml:
            assert result.ok and sum(len(chunk.content) for chunk in result.chunks) > 100, entry["file"]
        suffix = Path(entry["file"]).suffix.lower()
        if suffix == ".msg":  # mail is not read yet: reported with its type
            assert result.reason.startswith("unsupported file type '.msg'"), (entry["file"], result.reason)
        elif not ooxml and office_convert.soffice() is None:
            assert result.reason.endswith("needs LibreOffice to be read (install it so that 'soffice' is on PATH)")
        elif entry["category"] == "legacy-binary":
            assert result.ok or result.reason.endswith("LibreOffice could not read it (damaged, or another format)")
        if entry["category"] == "fuzzer-or-crash" and ooxml:
            assert not result.ok
    workbook = results["protected_passtika.xlsx"]  # encrypted; opens with its password
    assert workbook.ok and "This is an Encrypted Excel spreadsheet" in workbook.chunks[0].content
    assert results["bug53475-password-is-pass.docx"].reason.startswith("encrypted with a scheme")
    if office_convert.soffice() is not None:
        assert sum(results[entry["file"]].ok for entry in manifest if entry["category"] == "legacy-binary") >= 12
        assert results["password.xls"].reason == "encrypted: password needed (give it with --password)"
        assert "ZIP bomb" in "".join(
            chunk.content for chunk in parse_file(ParseTask(str(SHARED_OFFICE / "password.xls"), ("password",))).chunks
        )
