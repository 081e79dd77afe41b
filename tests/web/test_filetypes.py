"""One table of accepted file types (rhizome.pipeline.filetypes), used by ingest
(``rhizome add``), the extraction and the web upload: a file is accepted or refused the same
way, with the same message, by all three."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from rhizome.errors import InvalidInputError
from rhizome.jobs.store import SqlJobStore
from rhizome.library import Library
from rhizome.library.ingest import add_bytes
from rhizome.pipeline import filetypes
from rhizome.pipeline.extract import SUPPORTED, detect_type, extract
from rhizome.storage import LocalStorage
from tests.conftest import cli_env, run_cli

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 200
CSV = b"title,author,year\nMoby Dick,Herman Melville,1851\nUlysses,James Joyce,1922\n"
LATIN1_CSV = "titre;auteur\nLes Misérables;Victor Hugo\n".encode("cp1252")

REFUSED = [
    ("photo.png", PNG, "image/png", "PNG image"),
    ("photo.png", PNG, None, "PNG image"),
    ("books.csv", CSV, "text/csv", "CSV spreadsheet"),
    ("books.csv", CSV, None, "CSV spreadsheet"),
    ("livres.csv", LATIN1_CSV, "application/vnd.ms-excel", "CSV spreadsheet"),
    ("data", CSV, "text/csv", "CSV spreadsheet"),  # declared by its MIME type only
    ("junk.bin", bytes(range(256)) * 8, None, "binary data"),
]
ACCEPTED = [
    ("notes.md", b"# Notes\n\nSome *text* here.\n", None, "markdown"),
    ("notes.txt", b"Plain words.\n", "text/plain", "text"),
    ("README", b"Plain words without an extension.\n", None, "text"),
    ("page.html", b"<html><body><p>Hello</p></body></html>", "text/html", "html"),
    ("latin.txt", "Grüße, Café".encode("cp1252"), None, "text"),
    ("paper.pdf", b"%PDF-1.4\n%...", "application/pdf", "pdf"),
    ("misnamed.csv", b"%PDF-1.4\n%...", None, "pdf"),  # the bytes win over the name
]


def test_the_table() -> None:
    assert filetypes.SOURCE_TYPES == SUPPORTED == ("pdf", "epub", "html", "markdown", "text")
    for t in filetypes.FILE_TYPES:
        for ext in t.extensions:
            assert filetypes.by_extension(f"x{ext.upper()}") is t
        for mime in t.mime_types:
            assert filetypes.by_mime(f"{mime}; charset=utf-8") is t
        assert filetypes.stored_extension(t.source_type, None) == t.extensions[0]
    accepted = {e for t in filetypes.FILE_TYPES for e in t.extensions}
    refused = {e for t in filetypes.REFUSED_TYPES for e in t.extensions}
    assert not accepted & refused
    assert filetypes.refused_type("a.csv", None) == "a CSV spreadsheet (.csv)"
    assert filetypes.refused_type(None, "image/webp") == "an image (image/webp)"
    assert filetypes.refused_type("a.md", "text/markdown") is None
    assert filetypes.stored_extension("markdown", "x.markdown") == ".markdown"
    assert filetypes.stored_extension("text", "README") == ".txt"


@pytest.mark.parametrize(("name", "data", "ctype", "what"), REFUSED)
def test_refused_the_same_way_everywhere(
    client: TestClient,
    store: SqlJobStore,
    storage: LocalStorage,
    name: str,
    data: bytes,
    ctype: str | None,
    what: str,
) -> None:
    with pytest.raises(InvalidInputError) as extracted:
        extract(data, filename=name, content_type=ctype)
    message = extracted.value.message
    assert what in message and extracted.value.hint == filetypes.SUPPORTED_HINT
    with pytest.raises(InvalidInputError) as detected:
        detect_type(data, name, ctype)
    assert detected.value.message == message

    with pytest.raises(InvalidInputError) as ingested:  # rhizome add, before writing anything
        add_bytes(store, storage, data, filename=name, content_type=ctype)
    assert ingested.value.message == message
    assert Library(store).list_documents("local") == []
    assert store.list_jobs() == []

    files = [("files", (name, data, ctype or "application/octet-stream"))]
    if ctype is None:  # let the client send no content type at all
        files = [("files", (name, data))]  # type: ignore[list-item]
    r = client.post("/api/documents", files=files)
    assert r.status_code == 415, r.text
    error = r.json()["error"]
    assert error["message"] == f"{name}: {message}" and error["hint"] == filetypes.SUPPORTED_HINT
    assert Library(store).list_documents("local") == []


@pytest.mark.parametrize(("name", "data", "ctype", "source_type"), ACCEPTED)
def test_accepted_the_same_way_everywhere(
    client: TestClient,
    store: SqlJobStore,
    storage: LocalStorage,
    name: str,
    data: bytes,
    ctype: str | None,
    source_type: str,
) -> None:
    assert detect_type(data, name, ctype) == source_type
    added = add_bytes(store, storage, data, filename=name, content_type=ctype)
    assert added.document.source_type == source_type
    key = added.job.input_data["source_key"]
    assert key.endswith("/source" + filetypes.stored_extension(source_type, name))
    files = [("files", (name, data, ctype or "application/octet-stream"))]
    r = client.post("/api/documents", files=files)
    assert r.status_code == 201, r.text
    assert r.json()["documents"][0]["document"]["source_type"] == source_type


def test_rhizome_add_refuses_like_the_upload(db_url: str, tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"
    photo.write_bytes(PNG)
    sheet = tmp_path / "books.csv"
    sheet.write_bytes(CSV)
    env = cli_env(db_url, tmp_path / "storage")
    for path, what in ((photo, "PNG image"), (sheet, "CSV spreadsheet")):
        r = run_cli(["add", str(path)], env)
        assert r.returncode == 2, r.stdout + r.stderr
        assert what in r.stderr and "Traceback" not in r.stderr
