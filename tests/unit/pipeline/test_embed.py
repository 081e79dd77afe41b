"""Embedders: the hash embedder's properties, the HTTP embedder against a real local HTTP
server (errors mapped to job error classes), configuration, and the lazy model import."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from rhizome.errors import (
    ConfigError,
    InvalidInputError,
    PaywallError,
    PermanentError,
    RhizomeError,
    TransientError,
)
from rhizome.jobs.model import ErrorType
from rhizome.jobs.retry import classify
from rhizome.pipeline import embed
from rhizome.pipeline.embed import (
    Embedder,
    HashEmbedder,
    HttpEmbedder,
    MiniLMEmbedder,
    get_embedder,
)

# --- hash embedder -------------------------------------------------------------------------


def test_hash_embedder_shape_dtype_normalised_deterministic() -> None:
    embedder = HashEmbedder()
    assert isinstance(embedder, Embedder)
    assert embedder.dim == 256 and embedder.name
    texts = ["Coral reefs bleach in warm water.", "", "!!! 123", "Sourdough needs a starter."]
    vectors = embedder.embed(texts)
    assert vectors.shape == (4, 256) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(vectors, HashEmbedder().embed(texts))  # same in a new instance
    assert np.array_equal(vectors[0], embedder.embed([texts[0]])[0])  # batch-independent
    assert embedder.embed([]).shape == (0, 256)
    assert HashEmbedder(dim=64).embed(["x y z"]).shape == (1, 64)


def test_hash_embedder_deterministic_across_processes() -> None:
    code = (
        "from rhizome.pipeline.embed import HashEmbedder;"
        "print(HashEmbedder().embed(['Ocean warming bleaches coral reefs'])[0][:8].tolist())"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outputs) == 1


def test_hash_embedder_related_beats_unrelated() -> None:
    embedder = HashEmbedder()
    a, b, c = embedder.embed(
        [
            "Rising ocean temperatures cause coral reefs to bleach and lose their algae.",
            "Coral bleaching happens when warm ocean water makes reefs expel their algae.",
            "Knead the sourdough, let the loaf proof overnight and bake it in a hot oven.",
        ]
    )
    assert float(a @ b) > 0.3
    assert float(a @ b) > float(a @ c) + 0.2
    assert float(b @ b) == pytest.approx(1.0, abs=1e-5)


# --- MiniLM (no model load here; see tests/integration/test_embed_model.py) -----------------


def test_minilm_embedder_is_cheap_to_construct() -> None:
    embedder = MiniLMEmbedder(batch_size=8, threads=1)
    assert embedder.requested == "int8" and embedder.dim == 384  # the default: ONNX int8
    assert embedder.embed([]).shape == (0, 384)
    assert embedder._model is None and embedder.runtime is None  # nothing loaded or decided
    torch = MiniLMEmbedder(precision="torch")
    assert torch.name == "all-MiniLM-L6-v2" and torch.runtime == "torch"  # no load either
    assert torch._model is None
    with pytest.raises(ValueError):
        MiniLMEmbedder(batch_size=0)
    with pytest.raises(ConfigError, match="precision"):
        MiniLMEmbedder(precision="fp16")


def test_minilm_load_async_does_not_wait_for_the_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """A job polls load_async() between safe points while the model loads in the
    background (holding the model's lock): the poll must not wait for the load."""
    release = threading.Event()
    embedder = MiniLMEmbedder(precision="torch")

    def slow_load() -> object:
        release.wait()
        embedder._model = object()
        return embedder._model

    monkeypatch.setattr(embedder, "_load", slow_load)
    first = embedder.load_async()
    again = embedder.load_async()  # would block here if it took the model's lock
    assert again is first and not first.done() and not embedder.loaded
    release.set()
    first.result()
    assert embedder.loaded and embedder.load_async().done()


def test_minilm_without_onnx_runtime_keeps_pytorch(monkeypatch: pytest.MonkeyPatch) -> None:
    from rhizome.pipeline import minilm_onnx

    monkeypatch.setattr(minilm_onnx, "onnx_runtime_missing", lambda: "onnxruntime is missing")
    embedder = MiniLMEmbedder()
    planned = embedder.describe()  # what /healthz shows before anything loaded
    assert planned["runtime"] == "torch" and planned["precision"] == "fp32"
    assert "onnxruntime is missing" in planned["fallback"] and planned["loaded"] is False
    # full-precision vectors under the model's plain name: they mix with ONNX fp32 ones
    assert embedder.name == "all-MiniLM-L6-v2" and embedder.precision == "fp32"
    assert embedder.describe()["runtime"] == "torch" and "missing" in embedder.fallback


def test_minilm_precision_setting(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("RHIZOME_EMBEDDING_PRECISION", "fp32")
    clean_env.setenv("RHIZOME_MODEL_CACHE_DIR", str(tmp_path / "models"))
    embedder = get_embedder()
    assert isinstance(embedder, MiniLMEmbedder)
    assert embedder.requested == "fp32" and embedder.cache_dir == tmp_path / "models"
    clean_env.setenv("RHIZOME_EMBEDDING_PRECISION", "torch")
    other = get_embedder()
    assert other is not embedder and isinstance(other, MiniLMEmbedder)
    assert other.requested == "torch"
    clean_env.delenv("RHIZOME_MODEL_CACHE_DIR")
    clean_env.setenv("RHIZOME_STORAGE_URL", str(tmp_path / "data" / "storage"))
    assert embed.default_model_cache() == (tmp_path / "data" / "models").resolve()


def test_importing_embed_does_not_import_torch() -> None:
    code = """
import json, sys, time
import numpy, rhizome.errors  # shared dependencies, loaded by any worker anyway
t = time.perf_counter()
import rhizome.pipeline.embed as embed
own = time.perf_counter() - t
embed.get_embedder("minilm"); embed.MiniLMEmbedder(); embed.HashEmbedder().embed(["warm up"])
heavy = [m for m in ("torch", "sentence_transformers", "transformers", "httpx") if m in sys.modules]
print(json.dumps({"own": own, "heavy": heavy}))
"""
    env = {k: v for k, v in os.environ.items() if k != "RHIZOME_EMBEDDER"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    result = json.loads(out.stdout)
    assert result["heavy"] == []


# --- HTTP embedder against a local server ------------------------------------------------


class FakeEmbeddings(BaseHTTPRequestHandler):
    """An OpenAI-compatible /embeddings endpoint with scripted failures."""

    mode: ClassVar[str] = "ok"
    requests: ClassVar[list[dict[str, Any]]] = []
    dim: ClassVar[int] = 12

    def log_message(self, *_args: Any) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        payload = json.loads(self.rfile.read(length) or b"{}")
        type(self).requests.append(
            {"path": self.path, "auth": self.headers.get("Authorization"), "body": payload}
        )
        mode = type(self).mode
        if self.path != "/v1/embeddings":
            self._send(404, b'{"error": {"message": "not found"}}')
            return
        if mode == "slow":
            time.sleep(1.5)
        if mode in ("ok", "slow", "reversed", "unnormalised"):
            inputs = payload["input"]
            data = []
            for i, text in enumerate(inputs):
                vector = [float(len(text) % 7 + 1), float(i + 1)] + [0.5] * (self.dim - 2)
                if mode == "unnormalised":
                    vector = [3.0 * v for v in vector]
                data.append({"object": "embedding", "index": i, "embedding": vector})
            if mode == "reversed":
                data.reverse()
            answer = {"object": "list", "data": data, "model": payload["model"]}
            self._send(200, json.dumps(answer).encode())
            return
        scripted: dict[str, tuple[int, bytes]] = {
            "429": (429, b'{"error": {"message": "Rate limit reached, slow down"}}'),
            "503": (503, b"upstream unavailable"),
            "quota429": (
                429,
                b'{"error": {"message": "You exceeded your current quota", '
                b'"type": "insufficient_quota"}}',
            ),
            "402": (402, b'{"error": "payment required"}'),
            "401": (401, b'{"error": {"message": "Incorrect API key provided"}}'),
            "400": (400, b'{"error": {"message": "model not supported"}}'),
            "garbage": (200, b"<html>this is not json"),
            "nodata": (200, b'{"object": "list"}'),
            "short": (200, b'{"data": [{"embedding": [1.0, 0.0]}]}'),
            "strings": (200, json.dumps({"data": [{"embedding": ["a", "b"]}] * 2}).encode()),
            "ragged": (200, b'{"data": [{"embedding": [1.0, 0.0]}, {"embedding": [1.0]}]}'),
        }
        status, body = scripted[mode]
        self._send(status, body)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeEmbeddings)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def fake(server: str) -> Iterator[type[FakeEmbeddings]]:
    FakeEmbeddings.mode = "ok"
    FakeEmbeddings.requests = []
    yield FakeEmbeddings
    FakeEmbeddings.mode = "ok"


def test_http_embedder_success_batches_and_auth(server: str, fake: type[FakeEmbeddings]) -> None:
    texts = [f"text number {i}" for i in range(5)] + [""]
    with HttpEmbedder(server + "/", "test-model", "sk-test", batch_size=2) as embedder:
        vectors = embedder.embed(texts)
        assert vectors.shape == (6, 12) and vectors.dtype == np.float32
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        assert embedder.dim == 12 and embedder.name == "test-model"
    assert [len(r["body"]["input"]) for r in fake.requests] == [2, 2, 2]
    assert all(r["body"]["model"] == "test-model" for r in fake.requests)
    assert all(r["auth"] == "Bearer sk-test" for r in fake.requests)
    assert fake.requests[-1]["body"]["input"][-1] == " "  # empty text sent as a space
    assert fake.requests[0]["path"] == "/v1/embeddings"


def test_http_embedder_orders_by_index_normalises_and_probes_dim(
    server: str, fake: type[FakeEmbeddings]
) -> None:
    embedder = HttpEmbedder(server, "m")
    expected = embedder.embed(["a", "bb", "ccc"])
    fake.mode = "reversed"
    assert np.allclose(embedder.embed(["a", "bb", "ccc"]), expected)
    fake.mode = "unnormalised"
    assert np.allclose(embedder.embed(["a", "bb", "ccc"]), expected, atol=1e-6)
    fresh = HttpEmbedder(server, "m")
    fake.mode = "ok"
    assert fresh.dim == 12  # asked the service once
    assert fake.requests[-1]["auth"] is None
    assert fresh.embed([]).shape == (0, 12)


@pytest.mark.parametrize(
    ("mode", "error", "error_type"),
    [
        ("429", TransientError, ErrorType.TRANSIENT),
        ("503", TransientError, ErrorType.TRANSIENT),
        ("402", PaywallError, ErrorType.PAYWALL),
        ("quota429", PaywallError, ErrorType.PAYWALL),
        ("401", PaywallError, ErrorType.PAYWALL),
        ("400", InvalidInputError, ErrorType.INVALID),
        ("garbage", PermanentError, ErrorType.PERMANENT),
        ("nodata", PermanentError, ErrorType.PERMANENT),
        ("short", PermanentError, ErrorType.PERMANENT),
        ("strings", PermanentError, ErrorType.PERMANENT),
        ("ragged", PermanentError, ErrorType.PERMANENT),
    ],
)
def test_http_embedder_errors_are_classified(
    server: str,
    fake: type[FakeEmbeddings],
    mode: str,
    error: type[RhizomeError],
    error_type: ErrorType,
) -> None:
    fake.mode = mode
    with pytest.raises(error) as info:
        HttpEmbedder(server, "m", "key").embed(["one", "two"])
    assert type(info.value) is error
    assert classify(info.value) is error_type
    assert info.value.message and info.value.hint
    assert "127.0.0.1" in info.value.message  # says which service


def test_http_embedder_wrong_path_is_invalid_input(server: str, fake: type[FakeEmbeddings]) -> None:
    with pytest.raises(InvalidInputError, match="404"):
        HttpEmbedder(server.removesuffix("/v1"), "m").embed(["x"])


def test_http_embedder_timeout_is_transient(server: str, fake: type[FakeEmbeddings]) -> None:
    fake.mode = "slow"
    started = time.monotonic()
    with pytest.raises(TransientError, match=r"did not answer within 0\.3 s"):
        HttpEmbedder(server, "m", timeout=0.3).embed(["x"])
    assert time.monotonic() - started < 1.4


def test_http_embedder_unreachable_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # nothing listens on the port now
    with pytest.raises(TransientError, match="Could not reach") as info:
        HttpEmbedder(f"http://127.0.0.1:{port}/v1", "m", timeout=2).embed(["x"])
    assert classify(info.value) is ErrorType.TRANSIENT


# --- configuration -----------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for var in (
        "RHIZOME_EMBEDDER",
        "RHIZOME_EMBEDDING_URL",
        "RHIZOME_EMBEDDING_MODEL",
        "RHIZOME_EMBEDDING_API_KEY",
        "RHIZOME_EMBEDDING_PRECISION",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(embed, "_CACHE", {})
    return monkeypatch


def test_get_embedder_default_and_names(clean_env: pytest.MonkeyPatch) -> None:
    default = get_embedder()
    assert isinstance(default, MiniLMEmbedder)
    assert get_embedder("minilm") is default  # shared: the model loads once per process
    assert isinstance(get_embedder("hash"), HashEmbedder)
    assert isinstance(get_embedder(" HASH "), HashEmbedder)
    clean_env.setenv("RHIZOME_EMBEDDER", "hash")
    assert isinstance(get_embedder(), HashEmbedder)
    assert isinstance(get_embedder("minilm"), MiniLMEmbedder)  # an explicit name wins


def test_get_embedder_http_from_env(clean_env: pytest.MonkeyPatch, server: str) -> None:
    clean_env.setenv("RHIZOME_EMBEDDER", "http")
    with pytest.raises(ConfigError, match="RHIZOME_EMBEDDING_URL"):
        get_embedder()
    clean_env.setenv("RHIZOME_EMBEDDING_URL", server)
    with pytest.raises(ConfigError) as info:
        get_embedder()
    assert "RHIZOME_EMBEDDING_MODEL" in info.value.hint
    clean_env.setenv("RHIZOME_EMBEDDING_MODEL", "nomic-embed-text")
    clean_env.setenv("RHIZOME_EMBEDDING_API_KEY", "secret")
    embedder = get_embedder()
    assert isinstance(embedder, HttpEmbedder)
    assert embedder.model == "nomic-embed-text" and embedder.api_key == "secret"
    assert embedder.url == server + "/embeddings"
    assert get_embedder() is embedder


def test_get_embedder_unknown_is_config_error(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="Unknown embedder 'bert'") as info:
        get_embedder("bert")
    assert "minilm" in info.value.hint and "http" in info.value.hint
    clean_env.setenv("RHIZOME_EMBEDDER", "word2vec")
    with pytest.raises(ConfigError):
        get_embedder()
