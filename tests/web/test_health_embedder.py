"""/healthz says which embedding runtime the local model uses (ONNX Runtime int8/fp32, or
PyTorch and why), without loading the model."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from rhizome.config import load_settings
from rhizome.pipeline import embed, minilm_onnx
from rhizome.web.app import embedder_health


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setattr(embed, "_CACHE", {})
    monkeypatch.delenv("RHIZOME_EMBEDDER", raising=False)
    return monkeypatch


def test_health_shows_the_onnx_choice(fresh: pytest.MonkeyPatch) -> None:
    info = embedder_health(load_settings(embedding_precision="int8"))
    assert isinstance(info, dict)
    assert info["runtime"] == "onnx" and info["precision"] == "int8"
    assert info["loaded"] is False and info["fallback"] is None
    torch = embedder_health(load_settings(embedding_precision="torch"))
    assert isinstance(torch, dict) and torch["runtime"] == "torch" and torch["fallback"] is None


def test_health_shows_the_pytorch_fallback(fresh: pytest.MonkeyPatch) -> None:
    fresh.setattr(minilm_onnx, "onnx_runtime_missing", lambda: "onnxruntime is not installed")
    info = embedder_health(load_settings(embedding_precision="int8"))
    assert isinstance(info, dict)
    assert info["runtime"] == "torch" and info["precision"] == "fp32"
    assert "onnxruntime is not installed" in info["fallback"]


def test_healthz_has_the_embedder(client: TestClient, fresh: pytest.MonkeyPatch) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    info = r.json()["checks"]["embedder"]
    assert info["model"] and info["runtime"] in ("onnx", "torch", "HashEmbedder"), info
