"""`ifa model embed`: a real ONNX file exported here from a small torch module, real photos
from the bundled sample, run by ONNX Runtime; embeddings match the torch module, a rerun
embeds only changed files, models of the wrong shape fail with one clear sentence."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from torch import nn

from ifa.curation.ingest import importing
from ifa.curation.noise import embed
from ifa.curation.noise.model.data import read_features
from ifa.curation.noise.pixels import decode
from ifa.errors import IfaError
from ifa.sample import IMAGES_DIR, split_file

SIZE = 32  # small inputs keep the test fast; the model is size-agnostic except where pinned


class TinyEncoder(nn.Module):
    """conv -> relu -> global mean -> linear: (batch, 3, H, W) -> (batch, 16)."""

    def __init__(self, feature_map: bool = False):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, stride=2)
        self.fc = nn.Linear(8, 16)
        self.feature_map = feature_map

    def forward(self, x):
        h = torch.relu(self.conv(x))
        return h if self.feature_map else self.fc(h.mean(dim=(2, 3)))


def export(module: nn.Module, path: Path, size: int, dynamic_batch: bool = True) -> Path:
    """torch.onnx.export (the torch.export-based exporter: needs onnx and onnxscript)."""
    module.eval()
    shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
    torch.onnx.export(module, (torch.zeros(2, 3, size, size),), str(path), input_names=["pixels"],
                      output_names=["embedding"], dynamic_shapes=shapes, external_data=False)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    encoder = TinyEncoder()
    return {"module": encoder, "good": export(encoder, folder / "tiny.onnx", SIZE),
            "fixed64": export(TinyEncoder(), folder / "fixed64.onnx", 64, dynamic_batch=False),
            "map": export(TinyEncoder(feature_map=True), folder / "map.onnx", SIZE)}


@pytest.fixture
def copied_ws(ws, tmp_path):
    """The sample's train and validation splits, their photos copied into tmp (so the test
    may change a file)."""
    images = tmp_path / "photos"
    shutil.copytree(IMAGES_DIR, images)
    for split in ("train", "validation"):
        importing.import_imat(ws, split_file(split), split, images_dir=images)
    return ws


def test_embeddings_match_the_model_and_resume(copied_ws, models):
    ws = copied_ws
    images = ws.ledger.images_frame()
    first = embed.embed(ws, models["good"], input_size=SIZE, workers=2)
    assert first.dim == 16 and first.images == len(images) == first.images_embedded and first.images_reused == 0
    table = pq.read_table(first.path)
    assert table.num_rows == len(images) and set(table.column("image_id").to_pylist()) == set(images["image_id"])
    # the vectors are the torch module's on the same pixels and normalisation
    inputs, mask = read_features(Path(first.path), images["image_id"].to_numpy())
    assert mask.all() and inputs.matrix.shape == (len(images), 16)
    some = images.head(5)
    pixels = np.stack([decode(p, SIZE) for p in some["path"]])
    x = torch.from_numpy(embed.preprocess(pixels, embed.IMAGENET_MEAN, embed.IMAGENET_STD))
    with torch.no_grad():
        expected = models["module"](x).numpy()
    np.testing.assert_allclose(inputs.matrix[:5], expected, rtol=1e-4, atol=1e-5)
    assert len(np.unique(inputs.matrix.round(4), axis=0)) > 0.9 * len(images)  # real photos, distinct vectors

    again = embed.embed(ws, models["good"], input_size=SIZE, workers=1)
    assert again.images_embedded == 0 and again.images_reused == len(images) and again.path == first.path

    # one file changes: only that image is embedded again, and its vector follows the new file
    changed, donor = images["path"].iloc[0], images["path"].iloc[1]
    shutil.copyfile(donor, changed)
    third = embed.embed(ws, models["good"], input_size=SIZE, workers=1)
    assert third.images_embedded == 1 and third.images_reused == len(images) - 1
    inputs, _ = read_features(Path(third.path), images["image_id"].to_numpy())
    np.testing.assert_allclose(inputs.matrix[0], inputs.matrix[1], rtol=1e-5, atol=1e-6)
    assert pq.read_table(third.path).num_rows == len(images) and not list((Path(third.path).parent / "parts").iterdir())

    # another preprocessing is another store; `--features embeddings` names the latest
    other = embed.embed(ws, models["good"], input_size=SIZE, mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25], workers=1,
                        splits=["validation"])
    assert other.path != first.path and other.images == int((images["split"] == "validation").sum())
    assert embed.resolve_features(ws, "embeddings") == other.path
    assert embed.resolve_features(ws, "x.parquet") == "x.parquet"


def test_unreadable_files_are_reported_not_fatal(copied_ws, models):
    ws = copied_ws
    bad = ws.ledger.images_frame().iloc[3]
    Path(bad["path"]).write_bytes(b"not a jpeg")
    result = embed.embed(ws, models["good"], input_size=SIZE, workers=1, splits=["train"])
    assert result.unreadable == [bad["image_id"]] and result.images_embedded == result.images - 1


def test_models_that_do_not_fit_say_what_was_expected(sample_ws, models, tmp_path):
    with pytest.raises(IfaError, match=r"\(batch, 3, 32, 32\).*--input-size 64"):
        embed.embed(sample_ws, models["fixed64"], input_size=SIZE)
    with pytest.raises(IfaError, match=r"returns embedding of shape \(1, 8, 15, 15\); expected one embedding per image, \(batch, D\)"):
        embed.embed(sample_ws, models["map"], input_size=SIZE)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not onnx")
    with pytest.raises(IfaError, match="not a model ONNX Runtime can load"):
        embed.embed(sample_ws, junk, input_size=SIZE)
    with pytest.raises(IfaError, match="--mean and --std take three numbers"):
        embed.embed(sample_ws, models["good"], input_size=SIZE, mean=[0.5])
    assert not (sample_ws.root / "embeddings" / "latest.json").exists()
    # a fixed-size model runs at its size
    fixed = embed.embed(sample_ws, models["fixed64"], input_size=64, workers=1, splits=["validation"], batch=3)
    assert fixed.images_embedded == fixed.images > 0


def test_cuda_without_the_gpu_build_is_a_clear_error(sample_ws, models):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has a CUDA provider")
    with pytest.raises(IfaError, match="--device cuda needs onnxruntime-gpu"):
        embed.embed(sample_ws, models["good"], input_size=SIZE, device="cuda")
    with pytest.raises(IfaError, match="--device must be one of cpu, cuda"):
        embed.embed(sample_ws, models["good"], input_size=SIZE, device="tpu")


def test_features_embeddings_without_embeddings_says_what_to_run(sample_ws):
    with pytest.raises(IfaError, match="ifa model embed --onnx"):
        embed.resolve_features(sample_ws, "embeddings")


def test_cli_embed_json_and_errors(sample_ws, models, cli):
    args = ["model", "embed", "--onnx", str(models["good"]), "--input-size", str(SIZE), "--workers", "1",
            "--split", "validation", "-w", str(sample_ws.root)]
    data = cli.json(*args, "--json")
    assert data["dim"] == 16 and data["images_embedded"] == data["images"] > 0 and Path(data["path"]).exists()
    bad = cli("model", "embed", "--onnx", str(models["fixed64"]), "--input-size", str(SIZE),
              "-w", str(sample_ws.root))
    # the console entry point prints an IfaError as one line; under CliRunner it is the exception
    assert bad.exit_code == 1 and isinstance(bad.exception, IfaError) and "--input-size 64" in str(bad.exception)


def test_a_linked_model_json_is_refused_and_not_written_through(copied_ws, models, tmp_path):
    ws = copied_ws
    first = embed.embed(ws, models["good"], input_size=SIZE, workers=2)
    model_json = Path(first.path).parent / "model.json"
    elsewhere = tmp_path / "someone-elses.json"
    elsewhere.write_text("keep me")
    model_json.unlink()
    model_json.symlink_to(elsewhere)
    with pytest.raises(IfaError, match="model.json is a link"):
        embed.embed(ws, models["good"], input_size=SIZE, workers=2)
    assert elsewhere.read_text() == "keep me"
