"""How a reconstruction is scored against its image: 8-bit rounding, L1, MSE, PSNR and SSIM.

A leaf: it imports nothing else of alit, so the length rules (`criteria`), the evaluations
(`eval`), training (`train`) and `alit tokenize` (`tokens`) all score with the same code.
Images and reconstructions are float [B, 3, H, W] in [0, 1]; every score is per image, [B].

  to_8bit       values clamped to [0, 1] and put on the 8-bit grid k / 255, as a PNG holds them
  l1_error      mean |x - y| of the raw reconstruction (the paper's L1: not clamped)
  mse_error     mean (x - y)^2 of the reconstruction clamped to [0, 1]
  psnr          10 log10(1 / mse_error) in dB (inf when exact)
  ssim          torchmetrics' SSIM (Gaussian window 11, sigma 1.5, data range 1, mean over channels)
  pixel_metrics the tables' l1, mse and psnr of `alit eval` and `alit demo`, in `table_dtype`
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

PSNR_CAP = 100.0  # dB given to an exact reconstruction in the tables, so that means stay finite
SSIM_WINDOW, SSIM_SIGMA, SSIM_C1, SSIM_C2 = 11, 1.5, 0.01 ** 2, 0.03 ** 2  # constants for data range 1


def to_8bit(images: torch.Tensor, truncate: bool = False) -> torch.Tensor:
    """Values clamped to [0, 1] and put on the 8-bit grid k / 255: rounded to nearest, as an 8-bit
    PNG holds them, or truncated (floor of 255 x, as the paper's evaluation saves them)."""
    scaled = images.clamp(0, 1) * 255
    return (scaled.floor() if truncate else scaled.round()) / 255


def l1_error(images: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    """Mean absolute pixel error per image [B] of the raw (unclamped) reconstruction: the paper's L1."""
    return (reconstructions - images).abs().flatten(1).mean(1)


def mse_error(images: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    """Mean squared pixel error per image [B] of the reconstruction clamped to [0, 1]."""
    return (reconstructions.clamp(0, 1) - images).pow(2).flatten(1).mean(1)


def psnr(images: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image [B] (peak 1) of the reconstruction clamped to [0, 1]; inf when exact."""
    return -10 * torch.log10(mse_error(images, reconstructions))


def table_dtype(device: torch.device) -> torch.dtype:
    """What the tables score in: float64, float32 on MPS (which has no float64)."""
    return torch.float32 if device.type == "mps" else torch.float64


def pixel_metrics(images: torch.Tensor, recons: torch.Tensor) -> dict[str, torch.Tensor]:
    """l1, mse, psnr per image [B] in `table_dtype` (psnr capped at PSNR_CAP for an exact image)."""
    wide = table_dtype(images.device)
    diff = (recons.to(wide) - images.to(wide)).flatten(1)  # [B, 3HW]
    mse = diff.pow(2).mean(1)
    db = torch.where(mse > 0, -10 * torch.log10(mse.clamp_min(1e-300)), torch.full_like(mse, PSNR_CAP))
    return {"l1": diff.abs().mean(1), "mse": mse, "psnr": db.clamp(max=PSNR_CAP)}


def ssim(images: torch.Tensor, recons: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """SSIM per image [B] as torchmetrics computes it (Wang et al. 2004: Gaussian 11x11 window,
    sigma 1.5, data range 1, reflect-padded, mean over channels and pixels), differentiable;
    computed in float64 (float32 on MPS) unless `dtype` says otherwise. The window is applied as two
    1D passes (equal to torchmetrics up to float64 rounding, tested), which is much faster here."""
    wide = dtype or table_dtype(images.device)
    # in chunks: the five blurred maps of the whole batch at once
    return torch.cat([_ssim(r.to(wide), x.to(wide)) for r, x in zip(recons.split(64), images.split(64))])


def _ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x, y [B, C, H, W] -> SSIM [B]."""
    B, pad = x.shape[0], SSIM_WINDOW // 2
    maps = torch.cat([x, y, x * x, y * y, x * y])  # [5B, C, H, W]
    mu_x, mu_y, xx, yy, xy = _gaussian_blur(F.pad(maps, (pad,) * 4, mode="reflect")).split(B)
    var_x = (xx - mu_x.pow(2)).clamp(min=0)
    var_y = (yy - mu_y.pow(2)).clamp(min=0)
    cov = xy - mu_x * mu_y
    full = ((2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)) / (
        (mu_x.pow(2) + mu_y.pow(2) + SSIM_C1) * (var_x + var_y + SSIM_C2))  # [B, C, H, W]
    return full.flatten(1).mean(1)


def _gaussian_blur(padded: torch.Tensor) -> torch.Tensor:
    """[n, C, H + 10, W + 10] -> [n, C, H, W]: the SSIM window as two matrix products (rows, then
    columns) with banded matrices: matmuls run at BLAS speed, float64 convolutions do not (6x here)."""
    r = torch.arange(SSIM_WINDOW, dtype=padded.dtype, device=padded.device) - (SSIM_WINDOW - 1) / 2
    g = torch.exp(-(r / SSIM_SIGMA).pow(2) / 2)
    g = g / g.sum()  # [11]
    H, W = padded.shape[-2] - SSIM_WINDOW + 1, padded.shape[-1] - SSIM_WINDOW + 1
    return _band(g, H).t() @ (padded @ _band(g, W))


def _band(g: torch.Tensor, n: int) -> torch.Tensor:
    """[n + k - 1, n] with column j holding the window g [k] from row j on: x @ band blurs x's rows."""
    k = g.numel()
    band = g.new_zeros(n + k - 1, n)
    cols = torch.arange(n, device=g.device)
    band[cols[:, None] + torch.arange(k, device=g.device), cols[:, None]] = g
    return band
