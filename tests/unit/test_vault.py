"""The vault's safety rules and note format: titles as file names (hostile ones too), vault
and sub-folder paths, symlinks that lead outside, frontmatter written and read back."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from rhizome.errors import InvalidInputError
from rhizome.library.vault import (
    Vault,
    VaultSettings,
    clean_subfolder,
    clean_vault_path,
    note_name,
    note_paths,
    render_highlights,
    render_note,
    split_note,
    suffixed,
)


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Moby-Dick", "Moby-Dick"),
        ("../../etc/passwd", "etc passwd"),
        ("/absolute/path", "absolute path"),
        ('a\\b:c*d?e"f<g>h|i#j^k[l]m', "a b c d e f g h i j k l m"),
        ("..", "Untitled"),
        ("   ", "Untitled"),
        ("\x00\x01 hidden", "hidden"),
        (".hidden note", "hidden note"),
        ("CON", "CON_"),
        ("nul.txt", "nul.txt_"),
        ("trailing dots...", "trailing dots"),
    ],
)
def test_titles_become_safe_names(title: str, expected: str) -> None:
    name = note_name(title)
    assert name == expected
    assert "/" not in name and "\\" not in name and not name.startswith(".")


def test_long_titles_are_cut_to_100_bytes_and_collisions_get_a_stable_suffix() -> None:
    name = note_name("é" * 300)
    assert len(name.encode()) <= 100 and name
    doc = "1234abcd-0000-0000-0000-000000000000"
    assert suffixed("Notes", doc) == "Notes (1234abcd)" == suffixed("Notes", doc)
    paths = note_paths("Notes")
    assert paths["note"] == "Documents/Notes/Notes.md"
    assert paths["highlights"] == "Documents/Notes/Notes - Highlights.md"


@pytest.mark.parametrize("bad", ["relative/vault", "", "/a/../b", "~/../x/.."])
def test_vault_paths_must_be_absolute_without_dotdot(bad: str) -> None:
    with pytest.raises(InvalidInputError):
        clean_vault_path(bad)


@pytest.mark.parametrize("bad", ["../outside", "/etc", "a/../../b", ".obsidian", "C:\\x", "a/./b"])
def test_subfolders_stay_inside_the_vault(bad: str) -> None:
    with pytest.raises(InvalidInputError):
        clean_subfolder(bad)


def test_subfolder_defaults_and_nesting() -> None:
    assert clean_subfolder(None) == "Rhizome"
    assert clean_subfolder("") == "Rhizome"
    assert clean_subfolder("Notes/Rhizome/") == "Notes/Rhizome"


def test_symlinks_leading_outside_are_refused(tmp_path: Path) -> None:
    vault, outside = tmp_path / "vault", tmp_path / "outside"
    (vault / ".obsidian").mkdir(parents=True)
    outside.mkdir()
    os.symlink(outside, vault / "Rhizome")
    with pytest.raises(InvalidInputError, match="outside"):
        Vault(VaultSettings("u", str(vault))).check()
    (vault / "Rhizome").unlink()
    v = Vault(VaultSettings("u", str(vault)))
    v.check()
    (vault / "Rhizome" / "Documents").mkdir()
    os.symlink(outside, vault / "Rhizome" / "Documents" / "Evil")
    with pytest.raises(InvalidInputError, match="outside"):
        v.write("Documents/Evil/Evil.md", b"x")
    assert list(outside.iterdir()) == []
    os.symlink("/etc/hostname", vault / "Rhizome" / "Documents" / "leak.md")
    with pytest.raises(InvalidInputError):
        v.read("Documents/leak.md")
    for rel in ("../x.md", "/etc/passwd", "a/../../x", "a\\b"):
        with pytest.raises(InvalidInputError):
            v.resolve(rel)
    inside = vault / "Rhizome" / "Documents" / "Real"
    inside.mkdir()
    os.symlink(inside, vault / "Rhizome" / "Documents" / "Alias")  # inside: allowed
    assert v.write("Documents/Alias/Note.md", b"ok") and (inside / "Note.md").read_bytes() == b"ok"
    assert not v.write("Documents/Alias/Note.md", b"ok")  # same bytes: not rewritten


def test_missing_vault_says_where_to_run_the_job(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="does not exist on this machine") as info:
        Vault(VaultSettings("u", str(tmp_path / "nope"))).check()
    assert "--types obsidian_export,obsidian_sync" in (info.value.hint or "")


@pytest.mark.parametrize("folder", ["/", "/etc", "/tmp"])
def test_only_an_obsidian_vault_is_written_into(folder: str) -> None:
    with pytest.raises(InvalidInputError, match="not an Obsidian vault"):
        Vault(VaultSettings("u", folder)).check()


def test_note_frontmatter_round_trip() -> None:
    content = "# Title\n\n---\n\nA body with a rule above and `---` inside.\n"
    raw = render_note(
        document_id="d1",
        title='Quotes "and" colons: yes',
        author=None,
        source="markdown",
        tags=["a", "b c"],
        content=content,
    ).decode()
    fields, body = split_note(raw)
    assert body == content
    assert fields["id"] == "d1" and fields["title"] == 'Quotes "and" colons: yes'
    assert fields["tags"] == ["a", "b c"] and fields["author"] is None
    fields, body = split_note("---\ntags:\n  - x\n  - y\nid: 7\n---\nbody")
    assert fields == {"tags": ["x", "y"], "id": "7"} and body == "body"
    assert split_note("no frontmatter") == ({}, "no frontmatter")


def test_highlights_note_has_one_callout_per_highlight() -> None:
    raw = render_highlights(
        name="Moby-Dick",
        document_id="d",
        title="Moby-Dick",
        highlights=[
            {
                "id": "h1",
                "text": "Call me Ishmael.",
                "color": "blue",
                "note": "opening",
                "tags": ["sea"],
                "start": 5,
                "end": 21,
                "chunk_ids": ["c1"],
                "status": "matched",
            },
            {
                "id": "h2",
                "text": "Gone.",
                "color": None,
                "start": None,
                "end": None,
                "chunk_ids": [],
                "status": "unmatched",
            },
        ],
        headings={"c1": ["Chapter 1. Loomings."]},
    ).decode()
    assert "> [!info] Highlight" in raw and "> [!quote] Highlight (unmatched)" in raw
    assert "**Note:** opening" in raw and "#sea" in raw
    assert "[[Moby-Dick#Chapter 1. Loomings.|Chapter 1. Loomings.]]" in raw


def test_two_threads_writing_one_note_at_once(tmp_path: Path) -> None:
    """Two jobs of one worker (threads of one process) exporting the same note: each
    write has a temporary file of its own (the pid alone was shared: one thread's rename
    took the other's file away, FileNotFoundError, and the export failed)."""
    vault = tmp_path / "vault"
    (vault / ".obsidian").mkdir(parents=True)
    v = Vault(VaultSettings("u", str(vault)))
    v.check()
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def writer(n: int) -> None:
        start.wait()
        try:
            for i in range(300):
                v.write("Documents/Same/Same.md", f"{n} {i}".encode())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    folder = vault / "Rhizome" / "Documents" / "Same"
    assert [p.name for p in folder.iterdir()] == ["Same.md"]  # no temporary file left
