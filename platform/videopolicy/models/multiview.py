"""Multi-view packing: V cameras x T frames as one SVD video.

The video U-Net denoises ``F = 1 + V*T`` frames (25 = 1 + 3 x 8 in the paper): a pad frame (the pad
camera's current frame: the authors use the eye-in-hand camera, listed first), then camera 0's T frames,
camera 1's, ... Each camera's frames are steps t, t+s, ..., t+(T-1)s: the first is the current frame,
as in the authors' loader. Every frame is concatenated (channel dim) with the current-frame latent of
*its own* camera; the pad frame with the pad camera's.

T = 0 (the paper's horizon-0 row) packs one frame per camera: its current frame.
"""

from __future__ import annotations

import torch


def frames_per_camera(latents: torch.Tensor) -> int:
    """Frames per camera of clip latents (B, V, T, C, h, w) (1 for the horizon-0 row)."""
    return latents.shape[2]


def pack_video(latents: torch.Tensor, pad_camera: int = 0) -> torch.Tensor:
    """Clip latents (B, V, T, C, h, w) -> U-Net video (B, 1 + V*T, C, h, w).

    Frame 0 of each camera is its current (condition) frame and the first target.
    """
    b, v, t, c, h, w = latents.shape
    pad = latents[:, pad_camera, :1]  # (B, 1, C, h, w): the pad camera's current frame
    return torch.cat([pad, latents.reshape(b, v * t, c, h, w)], dim=1)


def pack_condition(first: torch.Tensor, frames_per_cam: int, pad_camera: int = 0) -> torch.Tensor:
    """Current-frame latents (B, V, C, h, w) -> concat conditioning (B, 1 + V*max(T,1), C, h, w)."""
    b, v, c, h, w = first.shape
    t = max(frames_per_cam, 1)
    per_cam = first[:, :, None].expand(b, v, t, c, h, w).reshape(b, v * t, c, h, w)
    return torch.cat([first[:, pad_camera, None], per_cam], dim=1)


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
