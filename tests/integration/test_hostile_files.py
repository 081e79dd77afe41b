"""Hostile files fail ``invalid`` and cannot take the worker down: each is read in a child
process with memory and CPU limits, and documents are capped in words, chunks and passage
length. The worker process's own memory stays bounded and it finishes a good document
afterwards."""

from __future__ import annotations

import io
import random
import resource
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from rhizome.jobs.model import ErrorType, JobStatus
from rhizome.jobs.store import SqlJobStore
from rhizome.library import Library
from rhizome.library.ingest import add_bytes, add_url
from rhizome.storage import LocalStorage
from tests.conftest import open_product_store
from tests.helpers import make_worker

MB = 1024 * 1024


def flate_bomb_pdf(decompressed: int = 600 * MB) -> bytes:
    """One page whose content stream inflates to ``decompressed`` bytes (~1,000:1)."""
    comp = zlib.compressobj(9)
    block = b"0 0 m 1 1 l S\n" * 4096
    parts = [comp.compress(block) for _ in range(decompressed // len(block))]
    stream = b"".join(parts) + comp.flush()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\n" % (len(objects) + 1))
    out.write(b"startxref\n%d\n%%%%EOF\n" % xref)
    return out.getvalue()


def epub(spine: list[bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(zipfile.ZipInfo("mimetype"), "application/epub+zip")
        z.writestr(
            "META-INF/container.xml",
            '<?xml version="1.0"?><container version="1.0" '
            'xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles>'
            '<rootfile full-path="OEBPS/content.opf" '
            'media-type="application/oebps-package+xml"/></rootfiles></container>',
        )
        items = "".join(
            f'<item id="c{i}" href="c{i}.xhtml" media-type="application/xhtml+xml"/>'
            for i in range(len(spine))
        )
        refs = "".join(f'<itemref idref="c{i}"/>' for i in range(len(spine)))
        z.writestr(
            "OEBPS/content.opf",
            '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" '
            'version="3.0"><metadata xmlns:dc="http://purl.org/dc/elements/1.1/">'
            f"<dc:title>Bomb</dc:title></metadata><manifest>{items}</manifest>"
            f"<spine>{refs}</spine></package>",
        )
        for i, body in enumerate(spine):
            z.writestr(
                f"OEBPS/c{i}.xhtml",
                b'<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"><body><p>'
                + body
                + b"</p></body></html>",
            )
    return buf.getvalue()


def many_words_epub() -> bytes:
    """8 entries of ~1 MiB of random words each, every one under the per-entry ratio check:
    1.36 million words in a 3.5 MB file."""
    rnd = random.Random(1)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = [
        "".join(rnd.choice(letters) for _ in range(rnd.randint(3, 9))).encode() for _ in range(2000)
    ]
    return epub([b" ".join(rnd.choice(vocab) for _ in range(170_000)) for _ in range(8)])


def deep_html(depth: int = 100_000) -> bytes:
    return b"<html><body>" + b"<div>" * depth + b"deep" + b"</div>" * depth + b"</body></html>"


@pytest.fixture
def backends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[SqlJobStore, LocalStorage]]:
    monkeypatch.setenv("RHIZOME_EMBEDDER", "hash")
    monkeypatch.setenv("RHIZOME_MAX_DOCUMENT_WORDS", "1000000")
    store = open_product_store(f"sqlite:///{tmp_path / 'rhizome.db'}")
    try:
        yield store, LocalStorage(tmp_path / "storage")
    finally:
        store.close()


HOSTILE = {
    "flate-bomb.pdf": (flate_bomb_pdf, "needs more than 400.0 MB of memory"),
    "many-words.epub": (many_words_epub, "words; the limit is 1,000,000"),
    "long-line.txt": (lambda: b"a" * (20 * MB), "characters without a break"),
    "nested.html": (deep_html, "nested too deeply"),
}


def test_hostile_files_fail_invalid_and_the_worker_goes_on(
    backends: tuple[SqlJobStore, LocalStorage],
) -> None:
    store, storage = backends
    added = {
        name: add_bytes(store, storage, make(), filename=name)
        for name, (make, _) in HOSTILE.items()
    }
    good = add_bytes(store, storage, b"# Fine\n\nA perfectly normal note.\n", filename="ok.md")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    worker = make_worker(
        store,
        storage,
        burst=True,
        concurrency=1,
        lease_seconds=60,
        memory_limits={"process_document": 400},  # over the type's own 2,048 MB
    )
    worker.run()
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    for name, (_, expected) in HOSTILE.items():
        job = store.get(added[name].job.id)
        assert job.status is JobStatus.FAILED, name
        assert job.error_type is ErrorType.INVALID, (name, job.last_error)
        assert expected in (job.error_message or ""), (name, job.error_message)
        assert job.next_retry_at is None
        doc = Library(store).get_document(added[name].document.id, "local")
        assert doc.status == "failed"
    assert store.get(good.job.id).status is JobStatus.COMPLETED
    # the bombs went off in child processes, not in the worker
    assert grown_mb < 300, f"the worker process grew by {grown_mb:.0f} MB"


def test_url_documents_cannot_reach_loopback(
    backends: tuple[SqlJobStore, LocalStorage], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SSRF: a URL document aimed at the server's own API (or anything on loopback) fails
    ``invalid`` without a connection; RHIZOME_FETCH_ALLOW_PRIVATE=1 lifts the check."""
    store, storage = backends
    inward = [
        add_url(store, "http://127.0.0.1:8000/api/documents"),
        add_url(store, "http://[::1]:8000/api/documents"),
        add_url(store, "http://[::ffff:127.0.0.1]:8000/"),
        add_url(store, "http://169.254.169.254/latest/meta-data/"),
    ]
    make_worker(store, storage, burst=True).run()
    for item in inward:
        job = store.get(item.job.id)
        assert job.status is JobStatus.FAILED and job.error_type is ErrorType.INVALID
        assert "Refusing to fetch" in (job.error_message or ""), job.error_message
    monkeypatch.setenv("RHIZOME_FETCH_ALLOW_PRIVATE", "1")
    allowed = add_url(store, "http://127.0.0.1:9/unreachable")  # nothing listens on port 9
    make_worker(store, storage, burst=True).run()
    job = store.get(allowed.job.id)
    assert job.error_type is ErrorType.TRANSIENT  # it tried to connect: the check was lifted
