"""Connection engines: pure functions over chunk views (no jobs, no database).

- :func:`semantic_engine` — cosine over embeddings, top-k, threshold, cross-document.
- :func:`contradiction_engine` — shared concepts with opposing stance.
- :func:`thematic_engine` — shared uncommon concepts across documents on different topics.
- :func:`detect_connections` — runs the three and merges them with :class:`Weights`;
  :func:`combined_score` is the weighted mean over the engines that judged a pair.

A ``detect_connections`` job can also run the engines as separate pause-safe stages and
merge the results with :func:`combine`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rhizome.pipeline.connect.combine import combine, combined_score, detect_connections
    from rhizome.pipeline.connect.concepts import ConceptIndex, extract_concepts
    from rhizome.pipeline.connect.contradiction import contradiction_engine
    from rhizome.pipeline.connect.index import VectorIndex, normalize_rows
    from rhizome.pipeline.connect.model import (
        ENGINES,
        ChunkView,
        FoundConnection,
        Progress,
        Weights,
        build_index,
        concept_index_for,
    )
    from rhizome.pipeline.connect.semantic import DEFAULT_SEMANTIC_THRESHOLD, semantic_engine
    from rhizome.pipeline.connect.thematic import thematic_engine

# Each name is imported from its module when first asked for (PEP 562): job registration
# reads ENGINES and Weights, and must not pull in numpy and the engines.
_WHERE = {
    "combine": "combine",
    "combined_score": "combine",
    "detect_connections": "combine",
    "ConceptIndex": "concepts",
    "extract_concepts": "concepts",
    "contradiction_engine": "contradiction",
    "VectorIndex": "index",
    "normalize_rows": "index",
    "ENGINES": "model",
    "ChunkView": "model",
    "FoundConnection": "model",
    "Progress": "model",
    "Weights": "model",
    "build_index": "model",
    "concept_index_for": "model",
    "DEFAULT_SEMANTIC_THRESHOLD": "semantic",
    "semantic_engine": "semantic",
    "thematic_engine": "thematic",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    loaded = importlib.import_module(f"{__name__}.{module}")
    # Bind every name of that module now: importing the submodule ``combine`` set this
    # package's ``combine`` to the module, which must be the function.
    for other, where in _WHERE.items():
        if where == module:
            globals()[other] = getattr(loaded, other)
    return globals()[name]


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


__all__ = [
    "DEFAULT_SEMANTIC_THRESHOLD",
    "ENGINES",
    "ChunkView",
    "ConceptIndex",
    "FoundConnection",
    "Progress",
    "VectorIndex",
    "Weights",
    "build_index",
    "combine",
    "combined_score",
    "concept_index_for",
    "contradiction_engine",
    "detect_connections",
    "extract_concepts",
    "normalize_rows",
    "semantic_engine",
    "thematic_engine",
]
