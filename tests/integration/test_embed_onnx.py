"""The quality gate of the ONNX embedding model, against the PyTorch reference, on corpus text.

all-MiniLM-L6-v2 runs through ONNX Runtime (int8 by default, or fp32), exported once from
the shipped weights into the model cache (``RHIZOME_MODEL_CACHE_DIR``; tests/conftest.py
points it at one folder per checkout, so the export happens once). On a few hundred real
passages (Moby-Dick and the corpus's web pages, chunked as the pipeline chunks them):

* int8 — mean cosine to PyTorch ≥ 0.99, min ≥ 0.97 per passage, top-10 neighbour overlap
  ≥ 0.85 (what the default has to pass);
* fp32 — the same vectors as PyTorch (float noise only).

Also: the cache is verified by hash, a damaged file is refused, the vectors of a text do
not depend on the other texts of its batch, and the stored name says model + precision.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from rhizome.errors import PermanentError
from rhizome.pipeline import minilm_onnx
from rhizome.pipeline.chunk import chunk_markdown
from rhizome.pipeline.clean import clean
from rhizome.pipeline.embed import MiniLMEmbedder, default_model_cache
from rhizome.pipeline.extract import extract
from tests.conftest import CORPUS

GATE_MEAN, GATE_MIN, GATE_OVERLAP = 0.99, 0.97, 0.85
MOBY_PASSAGES, PAGE_PASSAGES = 180, 12
PAGES = (
    "blog.python.org.html",
    "en.wikipedia.org.tsne.html",
    "nationalgeographic.co.uk.goats.html",
    "nature.com.telescope.html",
    "salon.com.emissions.html",
    "lemire.me.json.html",
    "caktusgroup.com.django.html",
    "phys.org.tool.html",
)


def _chunks(path: Path) -> list[str]:
    markdown = clean(extract(path.read_bytes(), filename=path.name).markdown)
    return [c.text for c in chunk_markdown(markdown)]


def _spread(items: list[str], n: int) -> list[str]:
    if len(items) <= n:
        return items
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


@pytest.fixture(scope="module")
def passages() -> list[str]:
    """~230 passages: Moby-Dick spread over the book, and the start of each web page."""
    texts = _spread(_chunks(CORPUS / "epub" / "moby-dick.epub"), MOBY_PASSAGES)
    for page in PAGES:
        texts += _chunks(CORPUS / "html" / page)[:PAGE_PASSAGES]
    return texts


@pytest.fixture(scope="module")
def reference(passages: list[str]) -> np.ndarray:
    torch = MiniLMEmbedder(precision="torch")
    vectors = torch.embed(passages)
    assert torch.runtime == "torch" and torch.name == "all-MiniLM-L6-v2"
    return vectors


def _neighbours(vectors: np.ndarray, k: int = 10) -> np.ndarray:
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def _quality(vectors: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    cos = np.sum(vectors * reference, axis=1)
    mine, theirs = _neighbours(vectors), _neighbours(reference)
    overlap = np.mean(
        [len(set(a.tolist()) & set(b.tolist())) / a.size for a, b in zip(mine, theirs, strict=True)]
    )
    return {"mean": float(cos.mean()), "min": float(cos.min()), "overlap": float(overlap)}


def test_int8_passes_the_quality_gate(passages: list[str], reference: np.ndarray) -> None:
    assert len(passages) >= 200
    int8 = MiniLMEmbedder()  # the default precision
    vectors = int8.embed(passages)
    assert int8.runtime == "onnx" and int8.precision == "int8" and int8.fallback is None
    assert int8.name == "all-MiniLM-L6-v2+int8-r2"
    assert vectors.shape == (len(passages), 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    q = _quality(vectors, reference)
    assert q["mean"] >= GATE_MEAN and q["min"] >= GATE_MIN and q["overlap"] >= GATE_OVERLAP, q
    # a text's vector does not depend on its batch (int8 runs each text alone)
    some = [passages[5], passages[150], passages[-1]]
    alone = np.stack([int8.embed([t])[0] for t in some])
    assert np.array_equal(alone, vectors[[5, 150, len(passages) - 1]])


def test_fp32_matches_pytorch(passages: list[str], reference: np.ndarray) -> None:
    fp32 = MiniLMEmbedder(precision="fp32")
    some = list(range(0, len(passages), 3))  # a third is plenty: the same vectors up to noise
    vectors = fp32.embed([passages[i] for i in some])
    assert fp32.runtime == "onnx" and fp32.precision == "fp32"
    assert fp32.name == "all-MiniLM-L6-v2"  # the same vectors as PyTorch, the same name
    q = _quality(vectors, reference[some])
    assert q["mean"] >= 0.9999 and q["min"] >= 0.999 and q["overlap"] >= 0.98, q


def test_export_is_cached_with_its_hash(tmp_path: Path) -> None:
    cache = default_model_cache()
    exported = minilm_onnx.ensure_exported(cache)  # made by the tests above: read back
    again = minilm_onnx.ensure_exported(cache)
    assert again.manifest == exported.manifest
    manifest = json.loads((exported.folder / "manifest.json").read_text())
    assert manifest["source_sha256"] == minilm_onnx.source_digest(minilm_onnx.source_dir())
    for precision in ("fp32", "int8"):
        info = manifest["files"][precision]
        assert info["check"]["passed"] is True
        assert minilm_onnx._sha256(exported.path(precision)) == info["sha256"]

    # a damaged copy of the cache: its int8 file no longer matches the manifest
    copy = tmp_path / "models"
    shutil.copytree(exported.folder, copy / exported.folder.name)
    damaged = copy / exported.folder.name / manifest["files"]["int8"]["file"]
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    broken = MiniLMEmbedder(cache_dir=copy)
    assert broken.name == "all-MiniLM-L6-v2+int8-r2"  # decided from the manifest
    with pytest.raises(PermanentError, match="int8 embedding model could not be loaded"):
        broken.load()


def test_int8_weights_fit_in_7_bits_and_the_first_feed_forward_outputs_stay_fp32() -> None:
    """Weights in [-64, 64] keep the sum of two u8 x s8 products within 16 bits (2 x 255 x
    64), so the AVX2 and AVX-512BW kernels of CPUs without VNNI (which saturate there) give
    the same vectors as VNNI ones; without it the gate's mean cosine fell to 0.9899 on such
    a machine."""
    import onnx
    from onnx import numpy_helper

    exported = minilm_onnx.ensure_exported(default_model_cache())
    graph = onnx.load(str(exported.path("int8"))).graph
    weights = [
        numpy_helper.to_array(t) for t in graph.initializer if t.data_type == onnx.TensorProto.INT8
    ]
    assert len(weights) >= 12  # the attention and feed-forward products of six layers
    assert all(int(w.min()) >= -64 and int(w.max()) <= 64 for w in weights)
    fp32_products = {n.name for n in graph.node if n.op_type == "MatMul"}
    kept = {
        f"/inner/encoder/layer.{i}/output/dense/MatMul" for i in range(minilm_onnx.FP32_FFN_LAYERS)
    }
    assert kept <= fp32_products
    assert "/inner/encoder/layer.5/output/dense/MatMul" not in fp32_products  # quantized
