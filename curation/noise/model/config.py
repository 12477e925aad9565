"""What shapes a model (TrainConfig) and the loss names, importable without torch: the CLI
builds its options and help from them before any command runs."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ....errors import IfaError
from . import backbones

# The losses train.LOSSES implements, by the names --loss takes.
LOSS_NAMES = ("bce", "weighted-bce")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that shapes a model. `image_size` is the paper's N (images resized to
    N x N, then cropped); `input_size` is M (what the network sees; default 0.875 N, as
    224 of 256 in the paper). `features` switches to heads over embeddings."""

    backbone: str = backbones.DEFAULT_BACKBONE
    loss: str = "bce"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    image_size: int = 64
    input_size: int | None = None
    seed: int = 0
    weights: str | None = None
    features: str | None = None

    def __post_init__(self) -> None:
        if self.features and self.backbone == backbones.DEFAULT_BACKBONE:
            # --features alone means "a head on these embeddings": the default head, not the CNN.
            object.__setattr__(self, "backbone", backbones.DEFAULT_FEATURE_HEAD)
        if self.loss not in LOSS_NAMES:
            raise IfaError(f"Unknown loss {self.loss!r}; choose one of {', '.join(LOSS_NAMES)}.")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise IfaError("--epochs and --batch-size must be at least 1 and --lr positive.")
        if self.image_size < 8:
            raise IfaError("--image-size must be at least 8 pixels.")
        if self.input_size is not None and not 8 <= self.input_size:
            raise IfaError("--input-size must be at least 8 pixels.")
        kind = backbones.get(self.backbone).input_kind
        if kind == "features" and not self.features:
            raise IfaError(f"Backbone {self.backbone} is a head on embeddings: pass --features FILE.")
        if kind == "pixels" and self.features:
            raise IfaError(f"--features needs a head backbone ({', '.join(n for n, b in backbones.BACKBONES.items() if b.input_kind == 'features')}), "
                           f"not {self.backbone}.")

    @property
    def m(self) -> int:
        return self.input_size or max(8, round(self.image_size * 0.875))

    def resumable_with(self, other: "TrainConfig") -> bool:
        """Same model but maybe more epochs: training can go on from the checkpoint."""
        mine, theirs = asdict(self), asdict(other)
        mine.pop("epochs"), theirs.pop("epochs")
        return mine == theirs
