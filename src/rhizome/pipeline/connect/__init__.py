"""Connection engines: pure functions over chunk views (no jobs, no database).

- :func:`semantic_engine` — cosine over embeddings, top-k, threshold, cross-document.
- :func:`contradiction_engine` — shared concepts with opposing stance.
- :func:`thematic_engine` — shared uncommon concepts across documents on different topics.
- :func:`detect_connections` — runs the three and merges them with :class:`Weights`;
  :func:`combined_score` is the weighted mean over the engines that judged a pair.

A ``detect_connections`` job can also run the engines as separate pause-safe stages and
merge the results with :func:`combine`.
"""

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
