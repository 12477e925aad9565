"""`ifa model embed`: an embedding per image from any pretrained model exported to ONNX,
run by ONNX Runtime (CPU, or its CUDA provider), kept in the workspace as Parquet.

Why ONNX: the strong pretrained image models (CLIP, DINOv2, ResNet-50, fashion models) all
export to it, ONNX Runtime installs beside the CPU torch build, and light heads fitted on
the embeddings find label noise far better than a CNN trained from scratch on CPU
(cleanlab's recommended recipe). Nothing is downloaded: the user brings the .onnx file.

Layout, under `<workspace>/embeddings/<model stem>-<key>/` (key: the model file's sha256
plus the preprocessing, so another model or --input-size/--mean/--std never mixes in):
  embeddings.parquet   image_id, sha256 (of the image file embedded), vector (float32 list)
  parts/               one Parquet per finished batch of a run in progress (a crash loses
                       only the batches in flight); folded into embeddings.parquet at the end
  model.json           the model file, its sha256, the preprocessing and the vector size
`<workspace>/embeddings/latest.json` names the folder last written: `--features embeddings`.

A rerun embeds only the images whose file is new or changed (its sha256 differs from the
one stored). Decoding runs in parallel through `curation.executors` (local processes or a
Dask cluster, as dedup); the model runs in this process, which holds the one session.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ...errors import IfaError
from ...progress import SILENT, Progress
from .. import executors
from ..ledger.schema import check_splits
from ..workspace import Workspace
from .pixels import decode

# torchvision's ImageNet statistics: what ResNet/EfficientNet/DINOv2 exports expect.
# CLIP models use (0.4815, 0.4578, 0.4082) / (0.2686, 0.2613, 0.2758): pass --mean/--std.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EMBED_DIR = "embeddings"
LATEST = "latest.json"
STORE = "embeddings.parquet"
FEATURES_LATEST = "embeddings"  # `--features embeddings`: the workspace's latest embeddings
# Images per decoding task. 224 px pixels are 150 KB an image, so 256 keep a task's result
# near 40 MB (Dask ships it back whole) while its scheduling overhead stays negligible.
DECODE_BATCH = 256
DEVICES = ("cpu", "cuda")


# ---- the model ------------------------------------------------------------------------------------
@dataclass
class OnnxModel:
    """A checked ONNX Runtime session: one image input (batch, 3, S, S), one (batch, D) output."""

    session: Any
    input_name: str
    input_dtype: Any  # numpy dtype the input takes (float32 or float16)
    fixed_batch: int | None  # the batch size the model was exported with, if fixed
    dim: int
    providers: list[str]


def model_sha256(path: Path, block: int = 1 << 20) -> str:
    """Hex sha256 of a model file's bytes and of its external weights beside it
    (`MODEL.onnx.data`, what torch.onnx.export writes for large models), read in 1 MiB blocks."""
    h = hashlib.sha256()
    path = Path(path)
    for part in (path, path.with_name(path.name + ".data")):
        if not part.exists():
            continue
        with open(part, "rb") as fh:
            while chunk := fh.read(block):
                h.update(chunk)
    return h.hexdigest()


def providers_for(device: str) -> list[str]:
    """ONNX Runtime execution providers for `device` (cpu | cuda). Raises IfaError for an
    unknown device, or cuda when this onnxruntime has no CUDA provider (the CPU wheel)."""
    import onnxruntime as ort

    if device not in DEVICES:
        raise IfaError(f"--device must be one of {', '.join(DEVICES)}, not {device!r}.")
    if device == "cpu":
        return ["CPUExecutionProvider"]
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        raise IfaError("--device cuda needs onnxruntime-gpu with a working CUDA (this onnxruntime offers "
                       f"{', '.join(available)}): `pip uninstall onnxruntime && pip install onnxruntime-gpu`, "
                       "or use --device cpu.")
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def open_model(path: Path, input_size: int, device: str = "cpu", threads: int | None = None) -> OnnxModel:
    """Load the ONNX model at `path` and check it can embed input_size x input_size RGB images.

    Expected: one input of shape (batch, 3, H, W) (any of them may be symbolic; fixed H, W
    must equal input_size) of float or float16, and a first output of shape (batch, D) or
    (batch, D, 1, 1). The model is run once on a blank image to learn D.
    Raises IfaError naming what was expected for a missing or unreadable file, a wrong
    input or output shape, or a model that fails at that size."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise IfaError(f"ONNX model {path} does not exist; export one first (README: \"Embeddings from a pretrained model\").")
    if input_size < 8:
        raise IfaError("--input-size must be at least 8 pixels.")
    providers = providers_for(device)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or executors.default_workers()
    options.log_severity_level = 3  # warnings about unused initializers are noise to a user
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for bad files
        raise IfaError(f"{path} is not a model ONNX Runtime can load: {_first_line(exc)}") from None
    if device == "cuda" and session.get_providers()[0] != "CUDAExecutionProvider":
        raise IfaError("ONNX Runtime could not start its CUDA provider (is CUDA/cuDNN installed where onnxruntime-gpu "
                       "expects it?); use --device cpu.")
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise IfaError(f"{path.name} takes {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); expected one "
                       f"image tensor of shape (batch, 3, {input_size}, {input_size}). Export the image encoder alone.")
    spec = inputs[0]
    shape = list(spec.shape)
    expected_in = f"(batch, 3, {input_size}, {input_size})"
    if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 3):
        raise IfaError(f"{path.name} takes input {spec.name} of shape {_shape(shape)}; expected {expected_in}: "
                       "RGB images, channels first.")
    fixed_hw = [d for d in shape[2:] if isinstance(d, int)]
    if any(d != input_size for d in fixed_hw):
        raise IfaError(f"{path.name} takes {_shape(shape)} images, not {expected_in}: pass --input-size "
                       f"{fixed_hw[0]} (or re-export the model with dynamic height and width).")
    dtypes = {"tensor(float)": np.float32, "tensor(float16)": np.float16}
    if spec.type not in dtypes:
        raise IfaError(f"{path.name} takes {spec.type} input; expected float or float16 pixels {expected_in}.")
    fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
    model = OnnxModel(session, spec.name, dtypes[spec.type], fixed_batch, 0, session.get_providers())
    probe = np.zeros((fixed_batch or 1, 3, input_size, input_size), dtype=model.input_dtype)
    try:
        raw = session.run([session.get_outputs()[0].name], {spec.name: probe})[0]
    except Exception as exc:  # noqa: BLE001
        raise IfaError(f"{path.name} failed on a {_shape(probe.shape)} input ({_first_line(exc)}); check "
                       f"--input-size against the size the model was exported for.") from None
    out_shape = raw.shape
    if not (raw.ndim == 2 or raw.ndim == 4 and out_shape[2:] == (1, 1)) or out_shape[0] != probe.shape[0]:
        raise IfaError(f"{path.name} returns {session.get_outputs()[0].name} of shape {_shape(out_shape)}; expected "
                       f"one embedding per image, (batch, D) or (batch, D, 1, 1). Export the pooled embedding "
                       f"(e.g. a ResNet without its fc layer, CLIP's image_embeds), not feature maps or tokens.")
    model.dim = int(out_shape[1])
    return model


def run_model(model: OnnxModel, x: np.ndarray) -> np.ndarray:
    """float32 (n, D) embeddings of the float32 (n, 3, S, S) batch `x` (padded to a fixed
    export batch size where the model has one)."""
    n = len(x)
    out_name = model.session.get_outputs()[0].name
    if model.fixed_batch is None:
        return model.session.run([out_name], {model.input_name: x.astype(model.input_dtype, copy=False)})[0] \
            .reshape(n, -1).astype(np.float32, copy=False)
    b = model.fixed_batch
    parts = []
    for lo in range(0, n, b):
        chunk = x[lo:lo + b]
        if len(chunk) < b:
            chunk = np.concatenate([chunk, np.zeros((b - len(chunk),) + chunk.shape[1:], chunk.dtype)])
        y = model.session.run([out_name], {model.input_name: chunk.astype(model.input_dtype, copy=False)})[0]
        parts.append(y.reshape(b, -1)[:min(b, n - lo)])
    return np.concatenate(parts).astype(np.float32, copy=False)


def preprocess(pixels: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 (n, S, S, 3) pixels to the float32 (n, 3, S, S) tensor models are exported
    for: scaled to [0, 1], minus `mean`, over `std` (per channel)."""
    scale = np.asarray(std, dtype=np.float32) * 255.0
    x = (pixels.astype(np.float32) - np.asarray(mean, dtype=np.float32) * 255.0) / scale
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


# ---- decoding in workers --------------------------------------------------------------------------
def decode_batch(jobs: list[tuple[str, str, str | None]], size: int) -> tuple[list[str], list[str], list[str], np.ndarray]:
    """Read and decode a batch of (image_id, path, sha256 already embedded or None) jobs.

    Returns (image ids, their files' sha256 ('' when unreadable), status per job: 'ok',
    'unchanged' (the file is the one already embedded: not decoded) or 'unreadable',
    and uint8 (m, size, size, 3) pixels of the 'ok' jobs in order). Runs in worker processes
    or on Dask workers: plain data in, plain data out."""
    ids, shas, status, pixels = [], [], [], []
    for image_id, path, known in jobs:
        ids.append(image_id)
        try:
            data = Path(path).read_bytes()
        except OSError:
            shas.append(""), status.append("unreadable")
            continue
        sha = hashlib.sha256(data).hexdigest()
        shas.append(sha)
        if sha == known:
            status.append("unchanged")
            continue
        picture = decode(io.BytesIO(data), size)
        if picture is None:
            status.append("unreadable")
            continue
        status.append("ok")
        pixels.append(picture)
    block = np.stack(pixels) if pixels else np.zeros((0, size, size, 3), dtype=np.uint8)
    return ids, shas, status, block


# ---- the store ------------------------------------------------------------------------------------
@dataclass
class EmbedResult:
    path: str  # the embeddings Parquet (image_id, sha256, vector)
    model: str
    model_sha256: str
    dim: int
    device: str
    images: int  # active images of the splits with a local file
    images_embedded: int  # embedded by this run
    images_reused: int  # already embedded from the same file and model
    images_without_file: int
    unreadable: list[str] = field(default_factory=list)  # image ids whose file could not be read or decoded
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def store_folder(ws: Workspace, model_path: Path, model_sha: str, input_size: int, mean, std) -> Path:
    """The folder of one model + preprocessing under `<workspace>/embeddings/`."""
    prep = json.dumps({"size": input_size, "mean": [float(m) for m in mean], "std": [float(s) for s in std]})
    key = hashlib.sha256((model_sha + prep).encode()).hexdigest()[:12]
    stem = "".join(c if c.isalnum() or c in "-_" else "-" for c in Path(model_path).stem)[:40] or "model"
    return ws.root / EMBED_DIR / f"{stem}-{key}"


def _vector_type(dim: int):
    import pyarrow as pa

    return pa.list_(pa.float32(), dim)


def _schema(dim: int):
    import pyarrow as pa

    return pa.schema([("image_id", pa.string()), ("sha256", pa.string()), ("vector", _vector_type(dim))])


def _write_atomic(table, path: Path) -> None:
    import pyarrow.parquet as pq

    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def _stored_tables(folder: Path) -> list[Path]:
    """The consolidated file, then the parts in the order they were written."""
    files = [folder / STORE] if (folder / STORE).exists() else []
    return files + sorted((folder / "parts").glob("part-*.parquet"))


def stored_shas(folder: Path) -> dict[str, str]:
    """{image_id: sha256 of the file its stored vector came from}; later writes win."""
    import pyarrow.parquet as pq

    known: dict[str, str] = {}
    for f in _stored_tables(folder):
        t = pq.read_table(f, columns=["image_id", "sha256"])
        known.update(zip(t.column("image_id").to_pylist(), t.column("sha256").to_pylist()))
    return known


def consolidate(folder: Path, dim: int) -> Path:
    """Fold the parts into `embeddings.parquet`, keeping each image's latest vector, and
    remove them. Idempotent: a crash in between leaves parts that the next run folds in."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    files = _stored_tables(folder)
    parts = [f for f in files if f.name != STORE]
    if not parts and (folder / STORE).exists():
        return folder / STORE
    tables = [pq.read_table(f).cast(_schema(dim)) for f in files]
    table = pa.concat_tables(tables) if tables else _schema(dim).empty_table()
    order = pa.array(np.arange(len(table), dtype=np.int64))
    last = table.append_column("_order", order).group_by("image_id").aggregate([("_order", "max")])
    keep = pc.sort_indices(last.column("_order_max"))
    table = table.take(pc.take(last.column("_order_max"), keep))
    _write_atomic(table, folder / STORE)
    for p in parts:
        p.unlink(missing_ok=True)
    return folder / STORE


def _write_part(folder: Path, ids: list[str], shas: list[str], vectors: np.ndarray, dim: int) -> None:
    import pyarrow as pa

    parts = folder / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))
    table = pa.Table.from_arrays([pa.array(ids, pa.string()), pa.array(shas, pa.string()),
                                  pa.FixedSizeListArray.from_arrays(flat, dim)], schema=_schema(dim))
    _write_atomic(table, parts / f"part-{time.time_ns():020d}-{os.getpid()}.parquet")


# ---- the command's library call ---------------------------------------------------------------------
def embed(ws: Workspace, onnx: Path, *, input_size: int = 224, mean: Sequence[float] | None = None,
          std: Sequence[float] | None = None, batch: int = 64, workers: int | None = None, scheduler: str | None = None,
          splits: Sequence[str] | None = None, device: str = "cpu", progress: Progress = SILENT) -> EmbedResult:
    """Embed every active image with a local file (of `splits`, default all) with the ONNX
    model `onnx`, resuming: images whose file was already embedded by this model with this
    preprocessing are not decoded again.

    input_size: S, images are squashed to S x S (as the paper resizes); mean/std: per-channel
    normalisation of [0, 1] pixels (default ImageNet's); batch: images per model call;
    workers / scheduler: where decoding runs (local processes, default all CPUs; or a Dask
    scheduler address, whose workers must see the same paths); device: cpu | cuda.

    Returns an EmbedResult (the Parquet written: image_id, sha256, vector). Raises IfaError
    for a bad option, a model whose shapes do not fit, or a workspace without files."""
    start = time.perf_counter()
    mean, std = _normalisation(mean, std, batch)
    check_splits(splits)
    onnx = Path(onnx)
    model = open_model(onnx, input_size, device)
    model_sha = model_sha256(onnx)
    folder = store_folder(ws, onnx, model_sha, input_size, mean, std)
    meta = {"model": str(onnx.resolve()), "model_sha256": model_sha, "input_size": input_size, "mean": list(mean),
            "std": list(std), "dim": model.dim}
    _write_model_json(ws, folder, meta)

    images = ws.ledger.images_frame(list(splits) if splits else None)
    has_file = images["path"].notna() & (images["path"].astype(str) != "")
    without_file = int((~has_file).sum())
    images = images[has_file]
    known = stored_shas(folder)
    ids = images["image_id"].astype(str).tolist()
    ledger_sha = images["sha256"].tolist()
    jobs = [(i, p, known.get(i)) for i, p, s in zip(ids, images["path"].astype(str), ledger_sha)
            if not (isinstance(s, str) and known.get(i) == s)]  # the ledger vouches the file is the one embedded
    reused = len(ids) - len(jobs)
    embedded, unreadable = 0, []
    n_workers = 1 if scheduler is None and workers == 1 else (workers or executors.default_workers())
    size = DECODE_BATCH if scheduler else executors.batch_size(len(jobs), n_workers, largest=DECODE_BATCH)
    with progress.task(f"embedding with {onnx.name}", total=len(jobs)) as task:
        for _jobs, (b_ids, b_shas, status, pixels) in executors.run_batches(
                decode_batch, executors.chunks(jobs, size), (input_size,), workers=n_workers, scheduler=scheduler):
            ok = [k for k, s in enumerate(status) if s == "ok"]
            reused += sum(s == "unchanged" for s in status)
            unreadable += [b_ids[k] for k, s in enumerate(status) if s == "unreadable"]
            if ok:
                vectors = np.concatenate([run_model(model, preprocess(pixels[lo:lo + batch], mean, std))
                                          for lo in range(0, len(pixels), batch)])
                if not np.isfinite(vectors).all():
                    raise IfaError(f"{onnx.name} returned NaN or infinite values; check --mean/--std and the export.")
                _write_part(folder, [b_ids[k] for k in ok], [b_shas[k] for k in ok], vectors, model.dim)
                embedded += len(ok)
            task.advance(len(status))
    path = consolidate(folder, model.dim)
    latest = ws.root / EMBED_DIR / LATEST
    tmp = latest.with_suffix(".tmp")
    tmp.write_text(json.dumps({"path": str(path.relative_to(ws.root)), **meta}, indent=1))
    os.replace(tmp, latest)
    return EmbedResult(str(path), str(onnx), model_sha, model.dim, device, len(ids), embedded, reused, without_file,
                       unreadable, round(time.perf_counter() - start, 2))


def _normalisation(mean, std, batch: int) -> tuple[tuple, tuple]:
    """The per-channel mean and std (ImageNet's when not given); IfaError for bad options."""
    mean = tuple(IMAGENET_MEAN if not mean else mean)
    std = tuple(IMAGENET_STD if not std else std)
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise IfaError("--mean and --std take three numbers each (R G B), and --std must be positive.")
    if batch < 1:
        raise IfaError("--batch must be at least 1.")
    return mean, std


def _write_model_json(ws: Workspace, folder: Path, meta: dict) -> None:
    """Create the model's folder and write its model.json; IfaError when either is a link."""
    ws.no_links(folder / "model.json")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.json").write_text(json.dumps(meta, indent=1))


def latest_embeddings(ws: Workspace) -> Path:
    """The Parquet `ifa model embed` wrote last in this workspace. Raises IfaError when
    there is none."""
    latest = ws.root / EMBED_DIR / LATEST
    if not latest.exists():
        raise IfaError("This workspace has no embeddings yet: run `ifa model embed --onnx MODEL.onnx` first, "
                       "or pass --features FILE.parquet.")
    path = ws.root / json.loads(latest.read_text())["path"]
    if not path.exists():
        raise IfaError(f"The latest embeddings ({path}) are gone; run `ifa model embed` again.")
    return path


def resolve_features(ws: Workspace, features: str | None) -> str | None:
    """`--features embeddings` as the path of the workspace's latest embeddings; any other
    value (a Parquet path, or None) unchanged."""
    if features == FEATURES_LATEST and not Path(features).exists():
        return str(latest_embeddings(ws))
    return features


def _shape(shape) -> str:
    return "(" + ", ".join(str(d) if d not in (None, "") else "?" for d in shape) + ")"


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[-1][:300] if text else type(exc).__name__
