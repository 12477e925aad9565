"""The baseline model on the bundled sample: training, determinism, resume after a kill,
prediction that `ifa eval` reads, feature heads, and clear errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ifa.curation import evaluation
from ifa.curation.noise.model import backbones, baseline, crossfit, train as trainer
from ifa.curation.noise.model.config import TrainConfig
from ifa.errors import IfaError

TINY = TrainConfig(epochs=1, image_size=32, batch_size=32)


def _weights(ws, name: str) -> dict:
    return torch.load(baseline.model_folder(ws, name) / trainer.CHECKPOINT, weights_only=True)["model"]


def test_train_predict_and_eval(sample_ws, tmp_path):
    result = baseline.train(sample_ws, TINY, name="m")
    assert result.images == 220 and result.epochs_done == 1 and result.resumed_from == 0
    assert result.history[0]["loss"] > 0 and result.val_f1 is not None
    out = baseline.predict(sample_ws, "validation", tmp_path / "p.parquet", name="m")
    frame = pd.read_parquet(out.out)
    assert out.images == 45 and list(frame.columns) == ["image_id"] + [str(i) for i in sample_ws.taxonomy.label_ids]
    assert frame.drop(columns="image_id").to_numpy().min() >= 0
    scored = evaluation.evaluate(sample_ws.ledger, sample_ws.taxonomy, evaluation.read_predictions(out.out), "validation")
    assert scored.images == 45 and scored.images_without_prediction == 0
    # The F1 reported while training is the paper's metric on the same predictions.
    assert scored.f1 == pytest.approx(result.val_f1, abs=1e-6)


def test_same_seed_same_model(sample_ws):
    baseline.train(sample_ws, TINY, name="a")
    baseline.train(sample_ws, TINY, name="b")
    baseline.train(sample_ws, TrainConfig(epochs=1, image_size=32, batch_size=32, seed=1), name="c")
    a, b, c = _weights(sample_ws, "a"), _weights(sample_ws, "b"), _weights(sample_ws, "c")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


# Trains 3 epochs but parks after the first checkpoint is on disk, so the kill lands between
# checkpoints whatever the machine's speed.
TRAIN_SCRIPT = """
import sys, time
from pathlib import Path
from ifa.curation.workspace import Workspace
from ifa.curation.noise.model import baseline, train
from ifa.curation.noise.model.config import TrainConfig
save = train._save
def save_then_park(*args, **kwargs):
    save(*args, **kwargs)
    print("checkpoint", flush=True)
    time.sleep(600)
train._save = save_then_park
with Workspace.open(Path(sys.argv[1])) as ws:
    baseline.train(ws, TrainConfig(epochs=3, image_size=32, batch_size=32), name=sys.argv[2])
"""


@pytest.mark.slow
def test_resume_after_kill_matches_an_uninterrupted_run(sample_ws):
    folder = baseline.model_folder(sample_ws, "killed")
    proc = subprocess.Popen([sys.executable, "-c", TRAIN_SCRIPT, str(sample_ws.root), "killed"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "checkpoint", "training ended before its first checkpoint"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    done = json.loads((folder / trainer.CONFIG).read_text())["epochs_done"]
    assert 1 <= done < 3, "kill the run between checkpoints"
    resumed = baseline.train(sample_ws, TrainConfig(epochs=3, image_size=32, batch_size=32), name="killed")
    assert resumed.resumed_from == done and resumed.epochs_done == 3 and len(resumed.history) == 3
    straight = baseline.train(sample_ws, TrainConfig(epochs=3, image_size=32, batch_size=32), name="straight")
    a, b = _weights(sample_ws, "killed"), _weights(sample_ws, "straight")
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)
    # A finished model is not trained again; asking for more epochs goes on from the checkpoint.
    again = baseline.train(sample_ws, TrainConfig(epochs=3, image_size=32, batch_size=32), name="straight")
    assert again.resumed_from == 3 and again.epochs_done == 3


def test_other_settings_need_restart(sample_ws):
    baseline.train(sample_ws, TINY, name="m")
    with pytest.raises(IfaError, match="--restart"):
        baseline.train(sample_ws, TrainConfig(epochs=1, image_size=40, batch_size=32), name="m")
    again = baseline.train(sample_ws, TrainConfig(epochs=1, image_size=40, batch_size=32), name="m", restart=True)
    assert again.resumed_from == 0


def test_feature_heads(sample_ws, tmp_path):
    ids = sample_ws.ledger.images_frame()["image_id"].tolist()
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(ids), 16)).astype(np.float32)
    list_file = tmp_path / "f.parquet"
    pd.DataFrame({"image_id": ids, "vector": list(vectors)}).to_parquet(list_file)
    wide_file = tmp_path / "w.parquet"
    pd.DataFrame({"image_id": ids} | {f"d{j}": vectors[:, j] for j in range(16)}).to_parquet(wide_file)
    for file, head in ((list_file, "linear"), (wide_file, "mlp")):
        config = TrainConfig(backbone=head, epochs=2, features=str(file))
        result = baseline.train(sample_ws, config, name=head)
        assert result.images == 220 and result.config["backbone"] == head
        out = baseline.predict(sample_ws, "test", tmp_path / f"{head}.parquet", name=head)
        assert out.images == 45
    # --features alone switches the default CNN to a linear head.
    assert baseline.train(sample_ws, TrainConfig(epochs=1, features=str(list_file)), name="auto").config["backbone"] == "linear"
    with pytest.raises(IfaError, match="none of"):
        pd.DataFrame({"image_id": ["x", "y"], "vector": list(vectors[:2])}).to_parquet(tmp_path / "bad.parquet")
        baseline.train(sample_ws, TrainConfig(epochs=1, features=str(tmp_path / "bad.parquet")), name="bad")


def test_weighted_bce_weights_rare_positives():
    labels = np.zeros((100, 3), dtype=bool)
    labels[:50, 0], labels[:1, 1] = True, True  # ratios 1, 99 (capped), no positives (capped)
    weight = trainer.LOSSES["weighted-bce"](labels).pos_weight
    assert weight[0] == 1.0 and weight[1] == trainer.MAX_POS_WEIGHT and weight[2] == trainer.MAX_POS_WEIGHT


def test_clear_errors(sample_ws):
    with pytest.raises(IfaError, match="Unknown backbone"):
        TrainConfig(backbone="vgg99")
    with pytest.raises(IfaError, match="Unknown loss"):
        TrainConfig(loss="focal")
    with pytest.raises(IfaError, match="--features"):
        TrainConfig(backbone="mlp")
    tv = backbones.get("resnet18")
    # Without torchvision it says so; with it, it still refuses to run without local weights.
    with pytest.raises(IfaError, match="torchvision" if tv.available() else "--weights"):
        tv.build(backbones.BuildArgs(228))
    if not torch.cuda.is_available():
        with pytest.raises(IfaError, match="CUDA"):
            trainer.resolve_device("cuda")
    assert trainer.resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(IfaError, match="no trained model"):
        baseline.predict(sample_ws, "test", sample_ws.root / "x.parquet", name="nothing")


def test_folds_are_stratified():
    rng = np.random.default_rng(0)
    labels = rng.random((500, 20)) < np.linspace(0.01, 0.5, 20)
    folds = crossfit.assign_folds(labels, 5, seed=0)
    assert np.bincount(folds).tolist() == [100] * 5
    for j in range(20):
        per_fold = np.bincount(folds[labels[:, j]], minlength=5)
        if labels[:, j].sum() >= 5:
            assert per_fold.min() >= 1
    assert (crossfit.assign_folds(labels, 5, seed=0) == folds).all()
    with pytest.raises(IfaError):
        crossfit.assign_folds(labels, 1)


def test_cli_train_and_predict(sample_ws, tmp_path, cli):
    ws = str(sample_ws.root)
    sample_ws.close()
    data = cli.json("model", "train", "--epochs", "1", "--image-size", "32", "--workspace", ws, "--json")
    assert data["epochs_done"] == 1 and data["images"] == 220 and "val_f1" in data
    out = tmp_path / "probs.parquet"
    res = cli("model", "predict", "--split", "validation", "--out", str(out), "--workspace", ws)
    assert res.exit_code == 0, res.output
    res = cli("eval", str(out), "--split", "validation", "--workspace", ws, "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["images"] == 45
