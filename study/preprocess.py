"""uint8 NHWC images -> normalised model input, and batched augmentation that runs where the images live."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def to_model_input(images: torch.Tensor, mean: tuple, std: tuple, channels_last: bool = False) -> torch.Tensor:
    """uint8 NHWC (1 or 3 channels) -> float NCHW normalised with the backbone's timm mean/std."""
    x = images.permute(0, 3, 1, 2).float().div_(255.0)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    mean_t = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    x = (x - mean_t) / std_t
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()


def random_resized_crop_flip(x: torch.Tensor, generator: torch.Generator, scale=(0.35, 1.0),
                             ratio=(3 / 4, 4 / 3)) -> torch.Tensor:
    """Per-sample random resized crop + horizontal flip of a float NCHW batch, as one affine resampling.

    Equivalent in distribution to torchvision's RandomResizedCrop + RandomHorizontalFlip, but batched, so it
    costs one ``grid_sample`` on the GPU instead of a Python loop per image.
    """
    n = x.shape[0]
    device = x.device
    area = torch.empty(n).uniform_(*scale, generator=generator)
    log_ratio = torch.empty(n).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    aspect = torch.exp(log_ratio)
    width = torch.sqrt(area * aspect).clamp(max=1.0)
    height = torch.sqrt(area / aspect).clamp(max=1.0)
    centre_x = (torch.rand(n, generator=generator) * 2 - 1) * (1 - width)
    centre_y = (torch.rand(n, generator=generator) * 2 - 1) * (1 - height)
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = width * flip
    theta[:, 0, 2] = centre_x
    theta[:, 1, 1] = height
    theta[:, 1, 2] = centre_y
    grid = F.affine_grid(theta.to(device=device, dtype=x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
