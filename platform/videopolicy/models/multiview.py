"""Multi-view packing: V cameras x T frames as one SVD video.

The video U-Net denoises ``F = 1 + V*T`` frames (25 = 1 + 3 x 8 in the paper): a pad frame (camera 0's
first frame), then camera 0's T future frames, camera 1's, ... Every frame is concatenated (channel
dim) with the first-frame latent of *its own* camera; the pad frame with camera 0's.

T = 0 (the paper's horizon-0 row) packs one frame per camera: its current frame.
"""

from __future__ import annotations

import torch


def frames_per_camera(latents: torch.Tensor) -> int:
    """T from clip latents (B, V, T+1, C, h, w)."""
    return latents.shape[2] - 1


def pack_video(latents: torch.Tensor) -> torch.Tensor:
    """Clip latents (B, V, T+1, C, h, w) -> U-Net video (B, 1 + V*max(T,1), C, h, w).

    Frame 0 of each camera is its condition frame; with T = 0 it is also the only target.
    """
    b, v, t1, c, h, w = latents.shape
    future = latents[:, :, 1:] if t1 > 1 else latents[:, :, :1]
    pad = latents[:, :1, 0]  # (B, 1, C, h, w): camera 0's first frame
    return torch.cat([pad, future.reshape(b, -1, c, h, w)], dim=1)


def pack_condition(first: torch.Tensor, frames_per_cam: int) -> torch.Tensor:
    """First-frame latents (B, V, C, h, w) -> concat conditioning (B, 1 + V*max(T,1), C, h, w)."""
    b, v, c, h, w = first.shape
    t = max(frames_per_cam, 1)
    per_cam = first[:, :, None].expand(b, v, t, c, h, w).reshape(b, v * t, c, h, w)
    return torch.cat([first[:, :1], per_cam], dim=1)


def unpack_video(video: torch.Tensor, num_cameras: int) -> torch.Tensor:
    """U-Net video (B, 1 + V*T, ...) -> per camera (B, V, T, ...), dropping the pad frame."""
    b, f = video.shape[:2]
    t = (f - 1) // num_cameras
    if 1 + num_cameras * t != f:
        raise ValueError(f"{f} frames is not 1 + {num_cameras} cameras x T")
    return video[:, 1:].reshape(b, num_cameras, t, *video.shape[2:])


def unpack_features(feature: torch.Tensor, batch: int, num_cameras: int) -> torch.Tensor:
    """A tapped feature (B*F, C, h, w) -> per camera video volumes (B, V, C, T, h, w)."""
    bf, c, h, w = feature.shape
    per_cam = unpack_video(feature.reshape(batch, bf // batch, c, h, w), num_cameras)  # (B, V, T, C, h, w)
    return per_cam.transpose(2, 3)
