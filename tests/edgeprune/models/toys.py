"""A toy detection batch and an overfitting loop, shared by the tests of every detector family's loss."""

from __future__ import annotations

import torch


def toy_batch(n: int = 4, size: int = 128, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` black images, each with one white box of 12-40 px; targets `[n, 6]` = (image, class 0, cx, cy, w, h)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.zeros(n, 3, size, size)
    rows = []
    for i in range(n):
        w, h = torch.randint(12, 40, (2,), generator=g).tolist()
        x0, y0 = torch.randint(0, size - 41, (2,), generator=g).tolist()
        images[i, :, y0:y0 + h, x0:x0 + w] = 1.0
        rows.append([i, 0, (x0 + w / 2) / size, (y0 + h / 2) / size, w / size, h / size])
    return images, torch.tensor(rows)


def overfit(model: torch.nn.Module, criterion, images: torch.Tensor, targets: torch.Tensor, steps: int) -> list[float]:
    """`steps` Adam steps (lr 2e-3) on one batch; the loss after each, every loss part checked finite."""
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(steps):
        loss, parts = criterion(model(images), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        assert torch.isfinite(parts).all()
    return losses
