"""The upload rules on their own: file names and types (no server needed)."""

from __future__ import annotations

import pytest

from server.errors import UnsupportedMediaType
from server.services.uploads import MAX_NAME, check_content, resolve_type, sanitize_filename
from tests.uploads import GIF, PDF, PNG


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("invoice.pdf", "invoice.pdf"),
        ("Team photo.png", "Team_photo.png"),
        ("Team%20photo.png", "Team_photo.png"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\win.ini", "win.ini"),
        ("C:\\Users\\ann\\report.docx", "report.docx"),
        (".htaccess", "htaccess"),
        ("...", "file"),
        ("", "file"),
        (None, "file"),
        ("résumé.pdf", "resume.pdf"),
        ("报告.pdf", "pdf"),
        ("a\r\nContent-Type: x.txt", "a_Content-Type_x.txt"),
        ('quote".txt', "quote_.txt"),
        ("x..y.txt", "x.y.txt"),
    ],
)
def test_file_names_are_reduced_to_a_safe_last_segment(given, kept):
    assert sanitize_filename(given) == kept


def test_a_long_file_name_is_cut_keeping_its_extension():
    kept = sanitize_filename("a" * 300 + ".pdf")
    assert len(kept) <= MAX_NAME and kept.endswith(".pdf")


@pytest.mark.parametrize(
    ("name", "declared", "mime", "kept"),
    [
        ("a.png", "image/png", "image/png", "a.png"),
        ("a.PNG", "IMAGE/PNG", "image/png", "a.PNG"),
        ("a.jpg", "image/jpg", "image/jpeg", "a.jpg"),
        ("a.csv", "application/vnd.ms-excel", "text/csv", "a.csv"),
        ("a.pdf", "application/octet-stream", "application/pdf", "a.pdf"),
        ("a.txt", "text/plain; charset=utf-8", "text/plain", "a.txt"),
        ("notes", "text/plain", "text/plain", "notes.txt"),
        ("notes.2024", "text/plain", "text/plain", "notes.2024.txt"),
    ],
)
def test_the_type_comes_from_the_declared_type_or_else_the_name(name, declared, mime, kept):
    ftype, stored = resolve_type(name, declared)
    assert (ftype.mime_type, stored) == (mime, kept)


@pytest.mark.parametrize(
    ("name", "declared"),
    [
        ("a.svg", "image/svg+xml"),
        ("a.svg", "application/octet-stream"),
        ("a.html", "text/html"),
        ("a.png", "text/html"),
        ("a.xhtml", "image/png"),
        ("a.exe", "application/octet-stream"),
        ("a", ""),
        ("a.pdf", "image/png"),
        ("a.js", "text/javascript"),
    ],
)
def test_markup_unknown_types_and_contradicting_names_are_refused(name, declared):
    with pytest.raises(UnsupportedMediaType):
        resolve_type(name, declared)


def test_leading_bytes_must_match_the_type():
    png, _ = resolve_type("a.png", "image/png")
    pdf, _ = resolve_type("a.pdf", "application/pdf")
    text, _ = resolve_type("a.txt", "text/plain")

    check_content(png, PNG)
    check_content(pdf, PDF)
    check_content(text, b"hello")
    for ftype, head in (
        (png, GIF),
        (pdf, PNG),
        (text, b"\xef\xbb\xbf  <!DOCTYPE html><p>"),
        (text, b"<svg onload=alert(1)>"),
    ):
        with pytest.raises(UnsupportedMediaType):
            check_content(ftype, head)
