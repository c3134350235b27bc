"""On-the-fly augmentation of face crops for training: flip, small rotation / scale /
translation, brightness / contrast, applied to a whole batch on the training device so
that a batch costs no Python per image."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class FaceAugment:
    """Random label-preserving changes for face crops, applied to a whole batch."""

    flip: bool = True  # expressions are left-right symmetric
    rotation: float = 10.0  # degrees, +-
    scale: float = 0.1  # +- fraction
    translate: float = 0.08  # +- fraction of the side
    brightness: float = 0.2  # +- fraction of full scale
    contrast: float = 0.2  # +- fraction

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """x: (N, C, S, S) float in 0..255 on any device; random numbers from the CPU
        ``generator`` (so a resumed run draws the same ones)."""
        n = x.shape[0]

        def uniform(amount: float) -> torch.Tensor:
            return (torch.rand(n, generator=generator) * 2.0 - 1.0) * amount

        angle = uniform(math.radians(self.rotation))
        zoom = 1.0 + uniform(self.scale)
        shift = torch.stack([uniform(2.0 * self.translate), uniform(2.0 * self.translate)], 1)
        sign = (torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
                if self.flip else torch.ones(n))
        bright = uniform(self.brightness * 255.0)
        contrast = 1.0 + uniform(self.contrast)
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        # Output pixel p samples the input at A p + t; zoom > 1 enlarges the face.
        theta = torch.stack([torch.stack([cos * sign, -sin, shift[:, 0]], 1),
                             torch.stack([sin * sign, cos, shift[:, 1]], 1)], 1)
        grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
        # Border padding repeats edge pixels, as the pipeline's crops do.
        y = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        mean = y.mean(dim=(1, 2, 3), keepdim=True)
        y = (y - mean) * contrast.view(-1, 1, 1, 1).to(x.device) + mean
        y = y + bright.view(-1, 1, 1, 1).to(x.device)
        return y.clamp(0.0, 255.0)
