"""Image-similarity operators shared by the autoencoder's loss and its exported anomaly map.

The structural similarity (SSIM) map and the Sobel gradients are computed here once, with fixed
convolutions only, so the very same code runs in the training loss and inside the ONNX graph the
edge executes: the map an operator sees on the line is the quantity the network was trained to
keep small. Windows are separable Gaussians applied per channel (grouped convolutions), which
trace into plain ``Conv`` nodes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SSIM_K1 = 0.01
SSIM_K2 = 0.03
GMS_C = 0.0104  # RIAD's gradient-similarity constant 0.0026 for [0, 1] images, scaled to [-1, 1]


def gaussian_kernel1d(sigma: float, radius: int | None = None) -> torch.Tensor:
    """Normalised 1-D Gaussian, of size ``2 * radius + 1`` (default radius ``int(4 sigma + 0.5)``)."""
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    radius = int(4.0 * sigma + 0.5) if radius is None else int(radius)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return (kernel / kernel.sum()).to(torch.float32)


def separable_filter(x: torch.Tensor, kernel: torch.Tensor, padding_mode: str = "reflect") -> torch.Tensor:
    """Filter every channel of ``x`` (B, C, H, W) with the 1-D ``kernel`` along both axes."""
    channels = x.shape[1]
    radius = kernel.shape[0] // 2
    x = F.pad(x, (radius, radius, radius, radius), mode=padding_mode)
    horizontal = kernel.to(x.dtype).view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    vertical = kernel.to(x.dtype).view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    x = F.conv2d(x, horizontal, groups=channels)
    return F.conv2d(x, vertical, groups=channels)


def ssim_map(x: torch.Tensor, y: torch.Tensor, window: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Per-pixel, per-channel SSIM of ``x`` and ``y`` (B, C, H, W), in [-1, 1] (1: identical).

    ``window`` is the 1-D Gaussian of the local statistics (Wang et al. use sigma 1.5, 11 taps);
    ``data_range`` is the span of the pixel values (2 for images normalised to [-1, 1]).
    """
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    mu_x = separable_filter(x, window)
    mu_y = separable_filter(y, window)
    var_x = separable_filter(x * x, window) - mu_x * mu_x
    var_y = separable_filter(y * y, window) - mu_y * mu_y
    cov = separable_filter(x * y, window) - mu_x * mu_y
    numerator = (2.0 * mu_x * mu_y + c1) * (2.0 * cov + c2)
    denominator = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return numerator / denominator


def _gradient_magnitude(x: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Per-channel magnitude of the gradient of ``x`` (B, C, H, W) along the 3x3 ``dx`` kernel and its transpose."""
    channels = x.shape[1]
    kernels = torch.stack([dx, dx.T]).unsqueeze(1).repeat(channels, 1, 1, 1)  # (2C, 1, 3, 3)
    grads = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernels, groups=channels)
    grads = grads.view(x.shape[0], channels, 2, *x.shape[-2:])
    return torch.sqrt((grads * grads).sum(dim=2) + 1e-12)


def sobel_magnitude(x: torch.Tensor) -> torch.Tensor:
    """Per-channel gradient magnitude of ``x`` (B, C, H, W) with 3x3 Sobel kernels (replicate padding)."""
    dx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=x.dtype, device=x.device)
    return _gradient_magnitude(x, dx)


def prewitt_magnitude(x: torch.Tensor) -> torch.Tensor:
    """Gradient magnitude ``(B, 1, H, W)`` of the channel mean of ``x`` with 3x3 Prewitt kernels (replicate padding)."""
    dx = torch.tensor([[1.0, 0.0, -1.0]] * 3, dtype=x.dtype, device=x.device) / 3.0
    return _gradient_magnitude(x.mean(dim=1, keepdim=True), dx)


def gradient_similarity(x: torch.Tensor, y: torch.Tensor, scales: int = 4, c: float = GMS_C) -> torch.Tensor:
    """Multi-scale gradient magnitude similarity ``(B, 1, H, W)`` of ``x`` and ``y``, in (0, 1] (1: identical).

    GMS (Xue et al., 2014) compares local gradient magnitudes, ``(2 g_x g_y + c) / (g_x^2 + g_y^2 +
    c)``; RIAD (Zavrtanik et al., 2021) averages it over ``scales`` halvings of the image (each
    scale's map bilinearly resized back), so a defect shows whether its edges are fine or coarse.
    ``c`` is for images in [-1, 1] (RIAD's 0.0026 for [0, 1], times 4).
    """
    height, width = int(x.shape[-2]), int(x.shape[-1])
    total = torch.zeros_like(x[:, :1])
    for scale in range(scales):
        if scale:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
        gx, gy = prewitt_magnitude(x), prewitt_magnitude(y)
        similarity = (2.0 * gx * gy + c) / (gx * gx + gy * gy + c)
        if scale:
            similarity = F.interpolate(similarity, size=(height, width), mode="bilinear", align_corners=False)
        total = total + similarity
    return total / scales
