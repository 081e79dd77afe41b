"""Obsidian export and two-way sync on both stores, in a temporary vault: the note layout,
re-export that rewrites only what changed, an edited note (a paragraph inserted at the top,
a sentence reworded inside a highlight, a highlighted paragraph deleted) synced back with
only that document re-chunked, its highlights matched / needs_review / unmatched and its
validated connections remapped; a failure injected in the swap leaving the old version
intact; conflicts and their resolution; new and deleted notes; a no-change sync that reads
no note; hostile titles and vault paths; pause and crash at every safe point."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rhizome.jobs.model import ErrorType, JobStatus
from rhizome.jobs.store import SqlJobStore
from rhizome.jobs.testing import INTERRUPTS, run_inline
from rhizome.library import rechunk
from rhizome.library.connections import Curation
from rhizome.library.highlights import Highlights
from rhizome.library.integrations import (
    conflict_versions,
    remapped_connections,
    request_obsidian_export,
    request_obsidian_sync,
)
from rhizome.library.repo import Library
from rhizome.library.review import Review
from rhizome.library.vault import Vault, VaultRepo, split_note
from rhizome.storage import LocalStorage
from tests.integrations import ready_document, vault_for

HARBOUR = (
    "# Harbour\n\n"
    "## Dawn\n\n"
    "The harbour master counts the ships at dawn. Gulls follow the fishing boats back in "
    "while the nets dry on the quay and the market opens its shutters.\n\n"
    "## Tides\n\n"
    "Spring tides flood the lower quay twice a month. The old pier creaks in every winter "
    "storm. The ferry waits for the morning tide before it leaves for the islands.\n\n"
    "## Storms\n\n"
    "The lighthouse keeper logs every storm in a red book. Waves break over the harbour "
    "wall in January and the boats stay tied up for days.\n"
)
ORCHARD = (
    "# Orchard\n\n## Trees\n\nThe orchard keeper prunes the apple trees in winter. Bees "
    "return when the blossom opens and the grass grows long between the rows.\n"
)
H_KEPT = "The harbour master counts the ships at dawn."
H_REWORDED = "Spring tides flood the lower quay twice a month."
H_TYPO = "The ferry waits for the morning tide"
H_DELETED = "The lighthouse keeper logs every storm in a red book."


@pytest.fixture(autouse=True)
def hash_embedder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RHIZOME_EMBEDDER", "hash")


def export(store: SqlJobStore, storage: LocalStorage, ids: list[str] | None = None) -> Any:
    job = request_obsidian_export(store, "local", ids)
    run = run_inline("obsidian_export", job_id=job.id, store=store, storage=storage)
    assert run.job.status is JobStatus.COMPLETED, run.job.error_message
    return run.output


def sync(store: SqlJobStore, storage: LocalStorage, **kwargs: Any) -> Any:
    job = request_obsidian_sync(store, "local", **kwargs)
    return run_inline("obsidian_sync", job_id=job.id, store=store, storage=storage)


def highlight(store: SqlJobStore, storage: LocalStorage, doc_id: str, text: str) -> str:
    doc = Library(store).get_document(doc_id, "local")
    content = storage.get(f"{doc.storage_folder}/content.md").decode()
    h = Highlights(store).create(
        doc_id, "local", text=text, start=None, end=None, content=content, color="green"
    )
    return h.id


def validate(store: SqlJobStore, a: str, b: str, pairs: list[tuple[str, str]]) -> list[str]:
    """Validated connections between the chunks of ``a`` and ``b`` holding these words."""
    library = Library(store)
    ca, cb = library.list_chunks(a, "local"), library.list_chunks(b, "local")
    rows = []
    for wa, wb in pairs:
        sa = next(c for c in ca if wa in c.text)
        sb = next(c for c in cb if wb in c.text)
        rows.append(
            {
                "source_chunk_id": sa.id,
                "target_chunk_id": sb.id,
                "source_document_id": a,
                "target_document_id": b,
                "scores": {"semantic": 0.7},
                "combined": 0.7,
            }
        )
    library.replace_connections(a, "local", rows)
    ids = []
    for c in library.list_connections(a, "local"):
        library.validate_connection(c.id, "local")
        ids.append(c.id)
    return ids


def _state(store: SqlJobStore, doc_id: str) -> tuple[list[str], list[Any], bytes]:
    library = Library(store)
    doc = library.get_document(doc_id, "local")
    return (
        [c.id for c in library.list_chunks(doc_id, "local")],
        [h.to_dict() for h in Highlights(store).find("local", doc_id)],
        doc.storage_folder.encode(),
    )


def test_export_layout_and_rewrite_only_what_changed(
    store: SqlJobStore, storage: LocalStorage, tmp_path: Path
) -> None:
    a = ready_document(store, storage, "Harbour notes", HARBOUR, author="A. Keeper")
    b = ready_document(store, storage, "Orchard notes", ORCHARD)
    highlight(store, storage, a, H_KEPT)
    validate(store, a, b, [("harbour master", "orchard keeper")])
    vault = vault_for(store, tmp_path, vault_name="My vault")
    out = export(store, storage)
    assert out["counts"] == {"written": 2}
    folder = vault / "Rhizome" / "Documents" / "Harbour notes"
    names = sorted(p.name for p in folder.iterdir())
    assert names == [
        ".rhizome",
        "Harbour notes - Connections.md",
        "Harbour notes - Highlights.md",
        "Harbour notes.md",
    ]
    assert sorted(p.name for p in (folder / ".rhizome").iterdir()) == [
        "chunks.json",
        "connections.json",
        "highlights.json",
        "metadata.json",
    ]
    fields, body = split_note((folder / "Harbour notes.md").read_text())
    assert body == HARBOUR
    assert (fields["id"], fields["title"], fields["author"]) == (a, "Harbour notes", "A. Keeper")
    assert len(fields["rhizome_hash"]) == 64
    highlights_note = (folder / "Harbour notes - Highlights.md").read_text()
    assert "> [!success] Highlight" in highlights_note and H_KEPT in highlights_note
    connections_note = (folder / "Harbour notes - Connections.md").read_text()
    assert "## Semantic similarity" in connections_note
    assert "[[Orchard notes]] · score 0.70 · ✓ validated" in connections_note
    assert "> The orchard keeper prunes" in connections_note
    note = next(n for n in out["notes"] if n["document_id"] == a)
    assert note["link"] == (
        "obsidian://open?vault=My%20vault&file=Rhizome%2FDocuments%2FHarbour%20notes"
        "%2FHarbour%20notes"
    )
    assert out["vault_link"] == "obsidian://open?vault=My%20vault"

    mtimes = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
    again = export(store, storage)
    assert again["counts"] == {"unchanged": 2}
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes  # nothing rewritten
    highlight(store, storage, a, "Gulls follow the fishing boats back in")
    third = export(store, storage, [a])
    assert third["counts"] == {"written": 1}
    changed = {p for p in mtimes if p.stat().st_mtime_ns != mtimes[p]}
    assert changed == {
        folder / "Harbour notes - Highlights.md",
        folder / ".rhizome" / "highlights.json",
    }

    (folder / "Harbour notes.md").write_text(
        (folder / "Harbour notes.md").read_text() + "\nMine.\n"
    )
    edited = export(store, storage, [a])  # the vault's edit is never overwritten by an export
    assert edited["counts"] == {"vault_changed": 1}
    assert (folder / "Harbour notes.md").read_text().endswith("Mine.\n")


def test_sync_an_edited_note(store: SqlJobStore, storage: LocalStorage, tmp_path: Path) -> None:
    a = ready_document(store, storage, "Harbour notes", HARBOUR)
    b = ready_document(store, storage, "Orchard notes", ORCHARD)
    ids = {
        "kept": highlight(store, storage, a, H_KEPT),
        "reworded": highlight(store, storage, a, H_REWORDED),
        "typo": highlight(store, storage, a, H_TYPO),
        "deleted": highlight(store, storage, a, H_DELETED),
    }
    deleted_offsets = Highlights(store).get(ids["deleted"], "local")
    connections = validate(
        store, a, b, [("Spring tides", "orchard keeper"), ("lighthouse keeper", "Bees return")]
    )
    vault = vault_for(store, tmp_path)
    export(store, storage)
    b_chunks = [c.id for c in Library(store).list_chunks(b, "local")]
    unchanged = sync(store, storage)
    assert unchanged.output["counts"] == {"unchanged": 2}

    note = vault / "Rhizome" / "Documents" / "Harbour notes" / "Harbour notes.md"
    text = note.read_text()
    text = text.replace(
        "# Harbour\n\n", "# Harbour\n\nA brand new opening paragraph about the sea.\n\n"
    )
    text = text.replace(
        H_REWORDED, "Spring tides often flood the quay at the lower end twice in a month."
    )
    text = text.replace(H_TYPO, "The ferry waits for the early morning tide")
    storms = text[text.index(H_DELETED) : text.index("for days.") + len("for days.")]
    text = text.replace(storms, "")
    note.write_text(text)
    body = split_note(text)[1]

    run = sync(store, storage)
    assert run.job.status is JobStatus.COMPLETED, run.job.error_message
    out = run.output
    assert out["counts"] == {"changed": 1, "unchanged": 1}
    [result] = out["notes"]
    assert (result["document_id"], result["direction"]) == (a, "vault → library")
    assert result["highlights"] == {"matched": 2, "needs_review": 1, "unmatched": 1}
    assert out["highlight_recovery"] == result["highlights"]
    doc = Library(store).get_document(a, "local")
    assert storage.get(f"{doc.storage_folder}/content.md").decode() == body
    assert not storage.exists(f"{doc.storage_folder}/{rechunk.STAGED}")
    stored = json.loads(storage.get(f"{doc.storage_folder}/chunks.json"))
    chunks = Library(store).list_chunks(a, "local")
    assert [c["id"] for c in stored["chunks"]] == [c.id for c in chunks]
    assert all(body[c.start : c.end] == c.text and c.embedding is not None for c in chunks)
    assert [c.id for c in Library(store).list_chunks(b, "local")] == b_chunks  # only A

    hs = {k: Highlights(store).get(v, "local") for k, v in ids.items()}
    assert hs["kept"].status == "matched" and body[hs["kept"].start : hs["kept"].end] == H_KEPT
    assert hs["kept"].chunk_ids
    review = hs["reworded"]
    assert review.status == "needs_review" and review.text == H_REWORDED
    assert body[review.start : review.end].startswith("Spring tides often flood")
    typo = hs["typo"]
    assert typo.status == "matched" and typo.text == "The ferry waits for the early morning tide"
    gone = hs["deleted"]
    assert gone.status == "unmatched" and gone.text == H_DELETED
    assert (gone.start, gone.end) == (deleted_offsets.start, deleted_offsets.end)  # untouched
    [pending] = Review(store, storage).pending("local")
    assert pending["id"] == review.id and pending["match_reason"]
    assert pending["suggested"].startswith("Spring tides often")

    moved = {c.id: c for c in Curation(store).search("local", state="all", limit=100).items}
    assert len(moved) == 2 and all(c.validated for c in moved.values())
    texts = {c.source_text: c for c in moved.values()}
    tides = next(c for t, c in texts.items() if "Spring tides often" in t)
    storm = next(c for t, c in texts.items() if "Spring tides often" not in t)
    flagged = {r["id"]: r for r in remapped_connections(store, "local")}
    assert tides.id not in flagged or flagged[tides.id]["remap_status"] == "review"
    assert flagged[storm.id]["remap_status"] == "lost"
    assert H_DELETED in flagged[storm.id]["remap_text"]
    assert set(connections).isdisjoint(moved)  # re-created on the new chunks
    assert result["connections"]["lost"] == 1
    follow = store.get(result["detect_connections_job"])
    assert follow.job_type == "detect_connections" and follow.entity_id == a

    again = sync(store, storage)  # the orchard's Connections note shows the moved connections
    assert again.output["counts"] == {"refreshed": 1, "unchanged": 1}
    assert again.output["notes"][0]["document_id"] == b
    assert sync(store, storage).output["counts"] == {"unchanged": 2}
    assert H_KEPT in note.with_name("Harbour notes - Highlights.md").read_text()


def test_a_failure_in_the_swap_leaves_the_old_version(
    store: SqlJobStore, storage: LocalStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = ready_document(store, storage, "Harbour notes", HARBOUR)
    b = ready_document(store, storage, "Orchard notes", ORCHARD)
    highlight(store, storage, a, H_REWORDED)
    validate(store, a, b, [("Spring tides", "orchard keeper")])
    vault = vault_for(store, tmp_path)
    export(store, storage)
    note = vault / "Rhizome" / "Documents" / "Harbour notes" / "Harbour notes.md"
    note.write_text(note.read_text().replace("twice a month", "every fortnight"))
    doc = Library(store).get_document(a, "local")
    before = _state(store, a)
    content = storage.get(f"{doc.storage_folder}/content.md")
    connections = Curation(store).search("local", state="all").items

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk on fire in the middle of the swap")

    monkeypatch.setattr(rechunk, "_remap", broken)
    run = sync(store, storage)
    assert run.job.status is JobStatus.FAILED
    assert _state(store, a) == before  # chunks, highlights: the old version
    assert storage.get(f"{doc.storage_folder}/content.md") == content
    assert not storage.exists(f"{doc.storage_folder}/{rechunk.STAGED}")
    assert [c.id for c in Curation(store).search("local", state="all").items] == [
        c.id for c in connections
    ]
    assert Library(store).get_document(a, "local").metadata.get(rechunk.PENDING_KEY) is None

    monkeypatch.undo()
    monkeypatch.setenv("RHIZOME_EMBEDDER", "hash")
    retried = sync(store, storage)  # the change is still seen, and now applied
    assert retried.output["counts"]["changed"] == 1
    doc_content = storage.get(f"{doc.storage_folder}/content.md").decode()
    assert "every fortnight" in doc_content


def _library_edit(
    store: SqlJobStore, storage: LocalStorage, doc_id: str, old: str, new: str
) -> None:
    doc = Library(store).get_document(doc_id, "local")
    content = storage.get(f"{doc.storage_folder}/content.md").decode()
    rechunk.swap_content(store, storage, doc_id, "local", content.replace(old, new))


def test_conflicts_are_kept_until_resolved(
    store: SqlJobStore, storage: LocalStorage, tmp_path: Path
) -> None:
    a = ready_document(store, storage, "Harbour notes", HARBOUR)
    b = ready_document(store, storage, "Orchard notes", ORCHARD)
    vault = vault_for(store, tmp_path)
    export(store, storage)
    folder = vault / "Rhizome" / "Documents"
    notes = {d: folder / n / f"{n}.md" for d, n in ((a, "Harbour notes"), (b, "Orchard notes"))}
    for doc_id, old in ((a, "at dawn"), (b, "in winter")):
        notes[doc_id].write_text(notes[doc_id].read_text().replace(old, old + " (vault)"))
        _library_edit(store, storage, doc_id, old, old + " (library)")
    run = sync(store, storage)
    assert run.output["counts"] == {"conflict": 2}
    assert {c["document_id"] for c in run.output["conflicts"]} == {a, b}
    for doc_id in (a, b):  # nothing overwritten: both versions stay
        versions = conflict_versions(store, storage, "local", doc_id)
        assert "(vault)" in versions["vault"] and "(library)" in versions["library"]
        assert "(vault)" in notes[doc_id].read_text()
    still = sync(store, storage)
    assert still.output["counts"] == {"conflict": 2}

    run = sync(store, storage, resolve=[(a, "keep-vault"), (b, "library")])
    assert run.job.status is JobStatus.COMPLETED, run.job.error_message
    assert run.output["counts"] == {"resolved": 2}
    assert run.output["conflicts"] == []
    doc_a = Library(store).get_document(a, "local")
    assert "at dawn (vault)" in storage.get(f"{doc_a.storage_folder}/content.md").decode()
    assert "in winter (library)" in notes[b].read_text()
    [backup] = (notes[b].parent / ".rhizome").glob("conflict-*.md")
    assert "in winter (vault)" in backup.read_text()  # the overwritten version was saved
    assert sync(store, storage).output["counts"] == {"unchanged": 2}

    _library_edit(store, storage, b, "Bees return", "Bees come back")
    one_side = sync(store, storage)
    assert one_side.output["counts"] == {"changed": 1, "unchanged": 1}
    assert "Bees come back" in notes[b].read_text()


def test_new_and_deleted_notes(
    store: SqlJobStore, storage: LocalStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = ready_document(store, storage, "Harbour notes", HARBOUR)
    b = ready_document(store, storage, "Orchard notes", ORCHARD)
    vault = vault_for(store, tmp_path)
    export(store, storage)
    docs = vault / "Rhizome" / "Documents"
    reads: list[str] = []
    real_read = Vault.read

    def counting(self: Vault, rel: str) -> bytes | None:
        reads.append(rel)
        return real_read(self, rel)

    monkeypatch.setattr(Vault, "read", counting)
    assert sync(store, storage).output["counts"] == {"unchanged": 2}
    assert reads == []  # unchanged notes are not even read

    (docs / "Fresh idea").mkdir()
    (docs / "Fresh idea" / "Fresh idea.md").write_text("# Fresh idea\n\nA thought about tides.\n")
    orchard = (docs / "Orchard notes" / "Orchard notes.md").read_bytes()
    (docs / "Orchard notes" / "Orchard notes.md").unlink()
    run = sync(store, storage)
    assert run.output["counts"] == {"new": 1, "deleted": 1, "unchanged": 1}
    new = next(n for n in run.output["notes"] if n["status"] == "new")
    created = Library(store).get_document(new["document_id"], "local")
    assert created.title == "Fresh idea"
    process = store.get(new["process_job"])
    assert process.job_type == "process_document" and process.entity_id == created.id
    gone = next(n for n in run.output["notes"] if n["status"] == "deleted")
    assert gone["document_id"] == b and "document was kept" in gone["message"]
    assert Library(store).get_document(b, "local").status == "ready"  # never deleted
    again = sync(store, storage)  # reported once, not redone; the new one is processing
    assert again.output["counts"] == {"deleted": 1, "processing": 1, "unchanged": 1}
    processed = run_inline("process_document", job_id=process.id, store=store, storage=storage)
    assert processed.job.status is JobStatus.COMPLETED
    third = sync(store, storage)
    assert "new" not in third.output["counts"] and third.output["counts"]["deleted"] == 1
    assert len(Library(store).list_documents("local")) == 3
    (docs / "Orchard notes" / "Orchard notes.md").write_bytes(orchard)  # restored as it was
    back = sync(store, storage)
    assert "deleted" not in back.output["counts"]
    assert VaultRepo(store).note_of_document("local", b).status == "synced"  # type: ignore[union-attr]
    assert a in {n.document_id for n in VaultRepo(store).notes("local")}


def test_hostile_titles_vault_paths_and_a_missing_vault(
    store: SqlJobStore, storage: LocalStorage, tmp_path: Path
) -> None:
    titles = ["../../etc/passwd", "CON", "Notes", "notes", "a/b\\c:d", "." * 5]
    ids = [ready_document(store, storage, t, f"# {i}\n\nText {i}.\n") for i, t in enumerate(titles)]
    outside = tmp_path / "outside"
    outside.mkdir()
    vault = vault_for(store, tmp_path)
    docs = vault / "Rhizome" / "Documents"
    docs.mkdir(parents=True)
    (docs / "Evil").symlink_to(outside)
    evil = ready_document(store, storage, "Evil", "# Evil\n\nText.\n")
    out = export(store, storage)
    assert out["counts"] == {"written": 6, "refused": 1}
    refused = next(n for n in out["notes"] if n["status"] == "refused")
    assert refused["document_id"] == evil and "outside" in refused["message"]
    assert list(outside.iterdir()) == []
    names = sorted(p.name for p in docs.iterdir())
    assert names == sorted(
        ["etc passwd", "CON_", "Notes", f"notes ({ids[3][:8]})", "a b c d", "Untitled", "Evil"]
    )
    for p in vault.rglob("*"):
        assert p.resolve().is_relative_to(vault.resolve()) or p.name == "Evil"

    VaultRepo(store).save_settings("local", vault_path=str(tmp_path / "elsewhere"), check=False)
    job = request_obsidian_sync(store, "local")
    run = run_inline("obsidian_sync", job_id=job.id, store=store, storage=storage)
    assert run.job.status is JobStatus.FAILED and run.job.error_type is ErrorType.INVALID
    assert "does not exist on this machine" in (run.job.error_message or "")
    assert run.job.retry_count == 0


@pytest.mark.parametrize("kind", ["export", "sync"])
def test_resumes_at_every_safe_point(
    store: SqlJobStore, storage: LocalStorage, tmp_path: Path, kind: str
) -> None:
    clean: Any = None
    plans: list[tuple[int | None, str]] = [(None, "pause")]
    n = 0
    while plans:
        at, how = plans.pop(0)
        user = f"u{n}"
        n += 1
        docs = [
            ready_document(store, storage, title, text, user=user)
            for title, text in (("Harbour notes", HARBOUR), ("Orchard notes", ORCHARD))
        ]
        vault = vault_for(store, tmp_path, user=user, vault_name="Vault")
        if kind == "sync":
            run_inline(
                "obsidian_export",
                {"document_ids": None},
                store=store,
                storage=storage,
                user_id=user,
            )
            folder = vault / "Rhizome" / "Documents"
            note = folder / "Harbour notes" / "Harbour notes.md"
            note.write_text(note.read_text().replace("at dawn", "before dawn"))
            (folder / "New one.md").write_text("# New one\n\nA new note.\n")
        run = run_inline(
            f"obsidian_{kind}",
            {"document_ids": None},
            store=store,
            storage=storage,
            user_id=user,
            interrupt_at=at,
            interrupt=how,  # type: ignore[arg-type]
        )
        assert run.job.status is JobStatus.COMPLETED, (at, how, run.runs)
        output = _comparable(run.output, docs)
        if clean is None:
            clean = output
            points = len(run.runs[0].safe_points)
            assert points >= 4
            plans = [(k, i) for k in range(1, points + 1) for i in INTERRUPTS]
        else:
            assert output == clean, (at, how)
        if kind == "sync":
            doc = Library(store).get_document(docs[0], user)
            assert "before dawn" in storage.get(f"{doc.storage_folder}/content.md").decode()
            assert len(Library(store).list_documents(user)) == 3  # the new note, once


def _comparable(output: Any, docs: list[str]) -> Any:
    text = json.dumps(output, sort_keys=True)
    for i, d in enumerate(docs):
        text = text.replace(d, f"doc-{i}")
    data = json.loads(text)
    data.pop("vault", None)
    for n in data.get("notes") or []:
        for key in ("detect_connections_job", "process_job", "document_id", "highlight_details"):
            n.pop(key, None)
    return data
