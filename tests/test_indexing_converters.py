"""Files to page texts: the PDF writer used by the tests, every supported format, every reported failure."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pypdf
import pytest
from pdf_factory import (
    build_text_pdf,
    write_blank_pdf,
    write_corrupt_pdf,
    write_encrypted_pdf,
    write_text_pdf,
)

from spanqa.errors import DocumentError
from spanqa.indexing.formats import extraction as reading
from spanqa.indexing.formats.extraction import discover_files, read_pages
from spanqa.indexing.formats.html_text import html_to_text
from spanqa.indexing.ingest.converters import PageConverter, ReadSettings
from spanqa.records import SkippedFile


def words(text: str) -> list[str]:
    return text.split()


def reason_for(path: Path, password: str | None = None) -> str:
    with pytest.raises(DocumentError) as caught:
        read_pages(path, password=password)
    assert caught.value.path == path
    return caught.value.reason


# pdf_factory


def test_pdf_factory_round_trip_through_pypdf(tmp_path):
    text = (
        "Skarv Point (the old station) stands on granite; its path is C:\\lights\\skarv. " * 4
        + "\n\nA second paragraph with a long word: pneumonoultramicroscopicsilicovolcanoconiosis."
    )
    path = write_text_pdf(tmp_path / "round.pdf", [text])
    extracted = pypdf.PdfReader(path).pages[0].extract_text()
    assert words(extracted) == words(text)


def test_pdf_factory_keeps_paragraph_breaks_as_blank_lines(tmp_path):
    path = write_text_pdf(tmp_path / "paragraphs.pdf", ["First paragraph.\n\nSecond paragraph."])
    extracted = pypdf.PdfReader(path).pages[0].extract_text()
    first, second = extracted.split("\n", 1)
    assert first == "First paragraph."
    assert second.splitlines()[0].strip() == ""


def test_pdf_factory_writes_correct_xref_offsets():
    data = build_text_pdf(["one", "two"])
    xref_at = int(data.rsplit(b"startxref\n", 1)[1].split(b"\n", 1)[0])
    assert data[xref_at:].startswith(b"xref\n0 8\n")
    entries = data[xref_at:].split(b"\n")[3:10]
    for number, entry in enumerate(entries, start=1):
        offset = int(entry[:10])
        assert data[offset:].startswith(b"%d 0 obj" % number)


def test_pdf_factory_rejects_text_helvetica_cannot_show():
    with pytest.raises(ValueError):
        build_text_pdf(["snowman \u2603"])


# read_pages: formats


def test_read_pages_returns_one_text_per_pdf_page(tmp_path):
    pages = ["Page one says hello.", "Page two says goodbye.", "Page three is last."]
    extracted = read_pages(write_text_pdf(tmp_path / "three.pdf", pages))
    assert [words(page) for page in extracted] == [words(page) for page in pages]


def test_read_pages_keeps_blank_pdf_pages_so_page_numbers_stay_right(tmp_path):
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(write_text_pdf(tmp_path / "text.pdf", ["First page.", "Third page."])))
    writer.insert_blank_page(width=612, height=792, index=1)
    with (tmp_path / "gap.pdf").open("wb") as handle:
        writer.write(handle)
    extracted = read_pages(tmp_path / "gap.pdf")
    assert len(extracted) == 3
    assert extracted[1].strip() == ""
    assert words(extracted[2]) == ["Third", "page."]


def test_read_pages_keeps_other_pages_when_one_page_fails(tmp_path, monkeypatch):
    path = write_text_pdf(tmp_path / "three.pdf", ["Good one.", "Bad page.", "Good three."])
    real_page_text = reading.page_text_of

    def extract_failing_on_page_two(page, layout):
        if "Bad page" in real_page_text(page, layout):
            raise KeyError("/Font")
        return real_page_text(page, layout)

    monkeypatch.setattr(reading, "page_text_of", extract_failing_on_page_two)
    extracted = read_pages(path)
    assert [words(page) for page in extracted] == [["Good", "one."], [], ["Good", "three."]]


def test_read_pages_reports_a_pdf_whose_every_page_fails(tmp_path, monkeypatch):
    path = write_text_pdf(tmp_path / "broken.pdf", ["One.", "Two."])

    def always_fails(page, layout):
        raise KeyError("/Font")

    monkeypatch.setattr(reading, "page_text_of", always_fails)
    assert reason_for(path).startswith("corrupt PDF:")


def test_read_pages_plain_text_is_one_page_verbatim(tmp_path):
    text = "Line one.\r\nLine two with  two spaces.\n\n  Indented.\n"
    path = tmp_path / "notes.txt"
    path.write_bytes(text.encode("utf-8"))
    assert read_pages(path) == [text]


def test_read_pages_splits_text_on_form_feeds(tmp_path):
    path = tmp_path / "pages.txt"
    path.write_text("Page one.\fPage two.\f\fPage four.\f", encoding="utf-8")
    assert read_pages(path) == ["Page one.", "Page two.", "", "Page four."]


def test_read_pages_markdown_is_kept_as_written(tmp_path):
    text = "# Title\n\n- item one\n- item two\n\nA paragraph with **bold** text.\n"
    for suffix in (".md", ".markdown"):
        path = tmp_path / f"notes{suffix}"
        path.write_text(text, encoding="utf-8")
        assert read_pages(path) == [text]


def test_read_pages_replaces_undecodable_bytes_instead_of_failing(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("Caf\xe9 au lait.".encode("latin-1"))
    assert read_pages(path) == ["Caf\ufffd au lait."]


def test_read_pages_drops_a_utf8_byte_order_mark(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbfHello.")
    assert read_pages(path) == ["Hello."]


def test_read_pages_html_keeps_visible_text_only(tmp_path):
    html = """<!doctype html><html><head><title>Harbour notes</title>
    <style>p { color: red; }</style><script>var secret = "hidden";</script></head>
    <body><h1>Skarv&nbsp;Point</h1><p>The light is   28 metres
    tall.</p><ul><li>Built in 1872</li><li>Automated in 1994</li></ul>
    <table><tr><td>Range</td><td>19 nautical miles</td></tr></table>
    <pre>keep   this
  layout</pre></body></html>"""
    path = tmp_path / "page.html"
    path.write_text(html, encoding="utf-8")
    [text] = read_pages(path)
    assert "secret" not in text and "color" not in text
    lines = [line for line in text.split("\n") if line != ""]
    assert lines[:5] == [
        "Harbour notes",
        "Skarv\xa0Point",
        "The light is 28 metres tall.",
        "Built in 1872",
        "Automated in 1994",
    ]
    assert "Range 19 nautical miles" in text
    assert "keep   this\n  layout" in text


def test_html_to_text_without_markup_is_the_text():
    assert html_to_text("Just words.") == "Just words."


def test_read_pages_htm_suffix_is_html(tmp_path):
    path = tmp_path / "page.HTM"
    path.write_text("<p>Upper-case suffix.</p>", encoding="utf-8")
    assert read_pages(path) == ["Upper-case suffix."]


# read_pages: failures, each with its reason


def test_zero_byte_file_is_reported_empty(tmp_path):
    for name in ("empty.pdf", "empty.txt", "empty.html"):
        (tmp_path / name).write_bytes(b"")
        assert reason_for(tmp_path / name) == "empty file (0 bytes)"


def test_file_without_pdf_header_is_reported(tmp_path):
    path = tmp_path / "fake.pdf"
    path.write_bytes(b"PK\x03\x04 this is a zip file, not a PDF")
    assert reason_for(path) == "not a PDF (no %PDF header)"


def test_corrupt_pdf_is_reported_with_pypdf_message(tmp_path):
    reason = reason_for(write_corrupt_pdf(tmp_path / "corrupt.pdf"))
    assert reason.startswith("corrupt PDF: ")
    assert len(reason) > len("corrupt PDF: ")


def test_truncated_pdf_is_reported_corrupt(tmp_path):
    data = build_text_pdf(["Some text that will be cut off."])
    path = tmp_path / "truncated.pdf"
    path.write_bytes(data[: len(data) // 3])
    assert reason_for(path).startswith("corrupt PDF: ")


def test_encrypted_pdf_without_password_needs_one(tmp_path):
    path = write_encrypted_pdf(tmp_path / "locked.pdf", ["Secret page."], user_password="sesame")
    assert reason_for(path) == "encrypted: password needed"


def test_encrypted_pdf_opens_with_its_password(tmp_path):
    path = write_encrypted_pdf(tmp_path / "locked.pdf", ["Secret page."], user_password="sesame")
    assert words(read_pages(path, password="sesame")[0]) == ["Secret", "page."]


def test_encrypted_pdf_with_wrong_password_is_reported(tmp_path):
    path = write_encrypted_pdf(tmp_path / "locked.pdf", ["Secret page."], user_password="sesame")
    assert reason_for(path, password="open up") == "encrypted: wrong password"


def test_encrypted_pdf_with_empty_user_password_opens_without_one(tmp_path):
    path = write_encrypted_pdf(tmp_path / "restricted.pdf", ["Readable page."], user_password="")
    assert words(read_pages(path)[0]) == ["Readable", "page."]
    # A password given for a file that needs none does no harm.
    assert words(read_pages(path, password="unneeded")[0]) == ["Readable", "page."]


def test_pdf_without_text_layer_needs_ocr(tmp_path):
    blank = write_blank_pdf(tmp_path / "scan.pdf", page_count=3)
    assert reason_for(blank) == "no text found, by OCR either (blank pages?)"
    with pytest.raises(DocumentError, match=r"no text layer: needs OCR \(index with --ocr auto\)"):
        read_pages(blank, ocr="off")


def test_whitespace_only_text_file_is_reported(tmp_path):
    path = tmp_path / "blank.txt"
    path.write_text(" \n\t\n", encoding="utf-8")
    assert reason_for(path) == "no text (only whitespace)"


def test_html_without_visible_text_is_reported(tmp_path):
    path = tmp_path / "script.html"
    path.write_text("<html><body><script>alert(1)</script></body></html>", encoding="utf-8")
    assert reason_for(path) == "no visible text"


def test_unsupported_suffix_is_reported(tmp_path):
    path = tmp_path / "table.xyz"
    path.write_text("a,b", encoding="utf-8")
    reason = reason_for(path)
    assert reason.startswith("unsupported file type '.xyz' (supported: .pdf, ")


def test_missing_file_is_reported(tmp_path):
    assert reason_for(tmp_path / "absent.pdf").startswith("cannot read file: No such file or directory")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_is_reported(tmp_path):
    path = write_text_pdf(tmp_path / "private.pdf", ["Private."])
    path.chmod(0)
    try:
        assert reason_for(path) == "cannot read file: Permission denied"
    finally:
        path.chmod(0o644)


def test_os_error_while_reading_is_reported(tmp_path, monkeypatch):
    """The same path as an unreadable file, reachable when the tests run as root."""
    path = write_text_pdf(tmp_path / "private.pdf", ["Private."])

    def refuse(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)
    assert reason_for(path) == "cannot read file: Permission denied"
    [skipped] = PageConverter().run(sources=[str(path)])["skipped"]
    assert skipped == SkippedFile(str(path), "cannot read file: Permission denied")


def test_directory_given_as_a_file_is_reported(tmp_path):
    assert reason_for(tmp_path).startswith("is a directory")


# discover_files


def test_discover_files_walks_folders_sorted_and_skips_bad_names(tmp_path):
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / ".git").mkdir()
    for name in ("b.pdf", "a.md", "sub/c.txt", "sub/d.HTML", "sub/e.docx", "other.xyz", "sub/Makefile", ".git/x.md", ".h.txt"):
        (folder / name).write_text("x", encoding="utf-8")
    explicit_bad = tmp_path / "named.xyz"
    explicit_bad.write_text("x", encoding="utf-8")
    missing = tmp_path / "missing.pdf"

    files, skipped = discover_files([folder, str(folder / "a.md"), explicit_bad, missing])

    assert files == [
        folder / "a.md", folder / "b.pdf", folder / "sub" / "c.txt", folder / "sub" / "d.HTML", folder / "sub" / "e.docx",
    ]
    assert all(file.is_absolute() for file in files)
    # Files of other types are reported with their type, in a folder too; hidden ones are not.
    assert [(Path(item.source).name, item.reason.split(" (supported")[0]) for item in skipped[:-1]] == [
        ("other.xyz", "unsupported file type '.xyz'"),
        ("Makefile", "unsupported file type '(none)'"),
        ("named.xyz", "unsupported file type '.xyz'"),
    ]
    assert skipped[-1] == SkippedFile(str(missing), "no such file or directory")


def test_discover_files_resolves_relative_paths(tmp_path, monkeypatch):
    (tmp_path / "a.txt").write_text("x", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    files, skipped = discover_files(["a.txt"])
    assert files == [tmp_path.resolve() / "a.txt"] and skipped == []


# PageConverter


def test_page_converter_one_document_per_page_with_text(tmp_path):
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(write_text_pdf(tmp_path / "text.pdf", ["First page.", "Third page."])))
    writer.insert_blank_page(width=612, height=792, index=1)
    with (tmp_path / "gap.pdf").open("wb") as handle:
        writer.write(handle)

    result = PageConverter().run(sources=[str(tmp_path / "gap.pdf")], meta={"tag": ["a", "b"]})

    assert result["skipped"] == []
    path = (tmp_path / "gap.pdf").resolve()
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    documents = result["documents"]
    # Each page is a ChunkMeta spanning the whole page: the chunker cuts chunks from it.
    assert [doc.meta for doc in documents] == [
        {"source": str(path), "file_type": "pdf", "page": number, "page_count": 3, "start": 0,
         "end": len(doc.content), "sha256": sha256, "tag": ["a", "b"]}
        for number, doc in zip((1, 3), documents)
    ]
    assert words(documents[1].content) == ["Third", "page."]


def test_page_converter_content_is_the_exact_page_text(tmp_path):
    text = "  Keeps   its spacing.\n\nAnd its blank lines.  \n"
    path = tmp_path / "exact.txt"
    path.write_text(text, encoding="utf-8")
    [document] = PageConverter().run(sources=[str(path)])["documents"]
    assert document.content == text


def test_page_converter_batch_reports_bad_files_and_converts_good_ones(tmp_path):
    good_pdf = write_text_pdf(tmp_path / "good.pdf", ["Good page one.", "Good page two."])
    corrupt = write_corrupt_pdf(tmp_path / "corrupt.pdf")
    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")
    good_md = tmp_path / "good.md"
    good_md.write_text("# Notes\n\nGood notes.", encoding="utf-8")

    result = PageConverter().run(sources=[str(good_pdf), str(corrupt), str(empty), str(good_md)])

    assert [(doc.meta["source"], doc.meta["page"]) for doc in result["documents"]] == [
        (str(good_pdf), 1),
        (str(good_pdf), 2),
        (str(good_md), 1),
    ]
    assert [skip.source for skip in result["skipped"]] == [str(corrupt), str(empty)]
    assert result["skipped"][0].reason.startswith("corrupt PDF: ")
    assert result["skipped"][1].reason == "empty file (0 bytes)"


def test_page_converter_uses_its_password(tmp_path):
    path = write_encrypted_pdf(tmp_path / "locked.pdf", ["Secret page."], user_password="sesame")
    assert PageConverter().run(sources=[str(path)])["skipped"][0].reason == "encrypted: password needed"
    [document] = PageConverter(ReadSettings(password="sesame")).run(sources=[str(path)])["documents"]
    assert words(document.content) == ["Secret", "page."]
    # Per-file passwords, as `spanqa index --passwords` takes them.
    [document] = PageConverter(ReadSettings(passwords={"locked.pdf": "sesame"})).run(sources=[str(path)])["documents"]
    assert words(document.content) == ["Secret", "page."]


def test_page_converter_reports_a_file_over_the_size_limit(tmp_path):
    path = write_text_pdf(tmp_path / "big.pdf", ["Some text."])
    [skipped] = PageConverter(ReadSettings(max_file_mb=1e-6)).run(sources=[str(path)])["skipped"]
    assert skipped.reason.startswith("too large: ")


def test_page_converter_serialization_round_trip():
    settings = ReadSettings(layout=False, ocr="off", max_file_mb=5.0, password="sesame", passwords={"a.pdf": "x"})
    data = PageConverter(settings).to_dict()
    assert data == {
        "type": "spanqa.indexing.ingest.converters.PageConverter",
        "init_parameters": {"settings": {"layout": False, "ocr": "off", "max_file_mb": 5.0,
                                         "password": "sesame", "passwords": {"a.pdf": "x"}}},
    }
    assert PageConverter.from_dict(data).settings == settings


@pytest.mark.parametrize(
    ("settings", "meta", "message"),
    [
        ({"ocr": "sometimes"}, None, "ocr='sometimes'"),
        ({"max_file_mb": 0}, None, "max_file_mb=0"),
        ({}, {"page": 3}, "'page' is spanqa's own"),
        ({}, {"dept.name": "hr"}, "'dept.name' is not a name"),
        ({}, [{}, {}], "2 meta dicts for 1 sources"),
    ],
)
def test_page_converter_bad_settings_or_meta_are_config_errors(tmp_path, settings, meta, message):
    from spanqa.errors import ConfigError

    path = tmp_path / "a.txt"
    path.write_text("Text.", encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(message)):
        PageConverter(ReadSettings(**settings)).run(sources=[str(path)], meta=meta)


def test_sample_data_converts(sample_data_dir):
    files, skipped = discover_files([sample_data_dir])
    assert skipped == []
    result = PageConverter().run(sources=[str(file) for file in files])
    assert result["skipped"] == []
    pages_per_file = {}
    for document in result["documents"]:
        pages_per_file[Path(document.meta["source"]).name] = document.meta["page_count"]
    assert pages_per_file == {
        "aurora_bicycle_works_handbook.pdf": 3,
        "greenhouse_notes.md": 1,
        "harbor_lighthouse_report.pdf": 2,
    }


def test_sample_pdfs_match_their_build_script(sample_data_dir, tmp_path):
    """The committed PDFs are exactly what tests/build_samples.py writes."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_samples", Path(__file__).parent / "build_samples.py")
    build_samples = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_samples)
    for written in build_samples.build_samples(tmp_path):
        assert written.read_bytes() == (sample_data_dir / written.name).read_bytes(), written.name


# The real PDFs in ../shared (skipped when absent)


def shared_pdf_manifest(shared_data_dir: Path) -> list[dict]:
    return json.loads((shared_data_dir / "pdfs" / "manifest.json").read_text(encoding="utf-8"))


def test_shared_pdfs_convert_or_are_reported(shared_data_dir):
    pdf_dir = shared_data_dir / "pdfs"
    entries = {entry["file"]: entry for entry in shared_pdf_manifest(shared_data_dir)}
    sources = [str(pdf_dir / name) for name in entries]

    result = PageConverter().run(sources=sources)  # must not raise, whatever the file

    reasons = {Path(skip.source).relative_to(pdf_dir.resolve()).as_posix(): skip.reason for skip in result["skipped"]}
    page_counts: dict[str, int] = {}
    for document in result["documents"]:
        name = Path(document.meta["source"]).relative_to(pdf_dir.resolve()).as_posix()
        page_counts[name] = document.meta["page_count"]
        assert document.content.strip() != ""
    assert set(reasons) | set(page_counts) == set(entries)
    assert set(reasons).isdisjoint(page_counts)

    for name, entry in entries.items():
        category = entry["category"]
        if category == "text":
            assert page_counts.get(name) == entry["pages"], (name, reasons.get(name))
        elif category == "scanned_no_text":
            assert page_counts.get(name) == entry["pages"], (name, reasons.get(name))
        elif category == "encrypted" and entry["password"] == "":
            assert page_counts[name] == entry["pages"]
        elif category == "encrypted":
            # AES-256 R6 files cannot even be tried with the empty password unless `cryptography` is installed.
            assert reasons[name] in (
                "encrypted: password needed",
                "encrypted: AES needs the 'cryptography' package (pip install cryptography)",
            ), name
        elif name == "malformed/empty_zero_bytes.pdf":
            assert reasons[name] == "empty file (0 bytes)"
        elif "pypdf_error" in entry:
            assert reasons[name].startswith("corrupt PDF: "), name
    assert reasons["encrypted/libreoffice_writer_password.pdf"] == "encrypted: password needed"
    assert reasons["encrypted/cpdf_rc4_128_userpw_baz.pdf"] == "encrypted: password needed"


def test_shared_encrypted_pdfs_open_with_their_passwords(shared_data_dir):
    pdf_dir = shared_data_dir / "pdfs"
    opened = []
    for entry in shared_pdf_manifest(shared_data_dir):
        if entry["category"] != "encrypted" or entry["password"] in (None, ""):
            continue
        path = pdf_dir / entry["file"]
        try:
            pages = read_pages(path, password=entry["password"])
        except DocumentError as error:
            # pypdf decrypts AES only with the optional `cryptography` package; RC4 needs nothing.
            assert error.reason == "encrypted: AES needs the 'cryptography' package (pip install cryptography)"
            continue
        assert len(pages) == entry["pages"]
        assert reason_for(path, password="not-the-password") == "encrypted: wrong password"
        opened.append(entry["file"])
    assert "encrypted/libreoffice_writer_password.pdf" in opened
    assert "encrypted/cpdf_rc4_128_userpw_baz.pdf" in opened
