"""Backbones as a registry: each entry builds a module mapping inputs to one logit per label.

Two kinds of input: "pixels" (uint8 images from the pixel cache, augmented on the fly)
and "features" (precomputed embeddings, `--features FILE`). Adding an architecture is one
small class with `build`; nothing else in ifa changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from typing import TYPE_CHECKING

from ....errors import IfaError

if TYPE_CHECKING:
    from torch import nn

# torch loads inside build(): the registry's names and help are read by the CLI, which
# must start without torch (1.5 s).


@dataclass(frozen=True)
class BuildArgs:
    """What a backbone may need: the number of labels, the input feature width (feature
    heads), and a local weights file (pretrained architectures)."""

    num_labels: int
    feature_dim: int | None = None
    weights: Path | None = None


class Backbone:
    """Base of every registry entry."""

    name: ClassVar[str]
    input_kind: ClassVar[str]  # "pixels" | "features"
    help: ClassVar[str]

    def build(self, args: BuildArgs) -> nn.Module:
        raise NotImplementedError

    def available(self) -> str | None:
        """None when usable here, else a sentence saying why not."""
        return None


# ---- trained from scratch -----------------------------------------------------------------
class SmallCNN(Backbone):
    """Four conv blocks (32-64-128-256 channels) and a linear head: about 0.4 M
    parameters, trains from scratch on a CPU in minutes at 64 px, needs no downloads."""

    name = "small-cnn"
    input_kind = "pixels"
    help = "small CNN trained from scratch (default; no downloads)"

    def build(self, args: BuildArgs) -> nn.Module:
        from torch import nn

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                                 nn.ReLU(inplace=True), nn.MaxPool2d(2))
        return nn.Sequential(block(3, 32), block(32, 64), block(64, 128), block(128, 256),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, args.num_labels))


# ---- heads on precomputed embeddings ------------------------------------------------------
class LinearHead(Backbone):
    name = "linear"
    input_kind = "features"
    help = "logistic regression on --features embeddings"

    def build(self, args: BuildArgs) -> nn.Module:
        from torch import nn
        return nn.Linear(_feature_dim(args), args.num_labels)


class MLPHead(Backbone):
    name = "mlp"
    input_kind = "features"
    help = "one hidden layer (512, ReLU, dropout 0.2) on --features embeddings"
    hidden = 512

    def build(self, args: BuildArgs) -> nn.Module:
        from torch import nn
        return nn.Sequential(nn.Linear(_feature_dim(args), self.hidden), nn.ReLU(inplace=True), nn.Dropout(0.2),
                             nn.Linear(self.hidden, args.num_labels))


def _feature_dim(args: BuildArgs) -> int:
    if not args.feature_dim:
        raise IfaError("This backbone is a head on embeddings: pass --features FILE (Parquet of image_id + vector).")
    return args.feature_dim


# ---- torchvision architectures, only with local weights ------------------------------------
class TorchvisionNet(Backbone):
    """A torchvision architecture initialised from a local state-dict file; its
    classification layer is replaced by one sized for the taxonomy. Never downloads."""

    input_kind = "pixels"
    arch: ClassVar[str]
    head: ClassVar[str]  # attribute path of the final Linear layer

    @property
    def help(self) -> str:  # type: ignore[override]
        return f"torchvision {self.arch}, needs torchvision and --weights PATH (a local state dict)"

    def available(self) -> str | None:
        try:
            import torchvision  # noqa: F401
        except ImportError:
            return f"{self.name} needs torchvision, which is not installed (pip install torchvision matching torch)."
        return None

    def build(self, args: BuildArgs) -> nn.Module:
        why = self.available()
        if why:
            raise IfaError(why)
        if args.weights is None:
            raise IfaError(f"{self.name} needs --weights PATH, a local torchvision state dict: "
                           "ifa never downloads weights. Or use --backbone small-cnn.")
        import torch
        import torchvision
        from torch import nn
        net = getattr(torchvision.models, self.arch)(weights=None)
        try:
            state = torch.load(args.weights, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError) as exc:
            raise IfaError(f"Cannot read weights {args.weights}: {exc}") from None
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        head_keys = {k for k in state if k.startswith(self.head + ".")}
        result = net.load_state_dict({k: v for k, v in state.items() if k not in head_keys}, strict=False)
        missing = [k for k in result.missing_keys if not k.startswith(self.head + ".")]
        if missing or result.unexpected_keys:
            raise IfaError(f"{args.weights} does not fit {self.arch}: {len(missing)} missing and "
                           f"{len(result.unexpected_keys)} unexpected tensors (e.g. {(missing + result.unexpected_keys)[0]}).")
        parent, _, attr = self.head.rpartition(".")
        owner = net.get_submodule(parent) if parent else net
        old = getattr(owner, attr) if not attr.isdigit() else owner[int(attr)]
        new = nn.Linear(old.in_features, args.num_labels)
        if attr.isdigit():
            owner[int(attr)] = new
        else:
            setattr(owner, attr, new)
        return net


class ResNet18(TorchvisionNet):
    name, arch, head = "resnet18", "resnet18", "fc"


class ResNet50(TorchvisionNet):
    name, arch, head = "resnet50", "resnet50", "fc"


class MobileNetV3Small(TorchvisionNet):
    name, arch, head = "mobilenet_v3_small", "mobilenet_v3_small", "classifier.3"


class EfficientNetB0(TorchvisionNet):
    name, arch, head = "efficientnet_b0", "efficientnet_b0", "classifier.1"


BACKBONES: dict[str, Backbone] = {b.name: b for b in (SmallCNN(), LinearHead(), MLPHead(), ResNet18(), ResNet50(),
                                                        MobileNetV3Small(), EfficientNetB0())}
DEFAULT_BACKBONE = SmallCNN.name
DEFAULT_FEATURE_HEAD = LinearHead.name


def get(name: str) -> Backbone:
    """The registry entry `name`. Raises IfaError listing the known names."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise IfaError(f"Unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}.") from None
