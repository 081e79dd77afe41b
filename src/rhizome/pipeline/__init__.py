"""Document processing: pure functions, no jobs and no database.

- :mod:`rhizome.pipeline.extract` — bytes (PDF, EPUB, HTML, Markdown, text) or a URL →
  :class:`~rhizome.pipeline.extract.Extracted` (raw markdown + title, author, metadata).
- :mod:`rhizome.pipeline.clean` — raw markdown → clean markdown (whitespace, hyphenation,
  PDF page headers/footers and page numbers).
- :mod:`rhizome.pipeline.chunk` — clean markdown → :class:`~rhizome.pipeline.chunk.Chunk`
  list whose offsets slice the markdown exactly.

The usual sequence (what ``process_document`` does)::

    extracted = extract(data, filename=name)
    content_md = clean(extracted.markdown)
    chunks = chunk_markdown(content_md)

Submodules are imported on demand so that importing the package stays cheap.
"""
