"""Helpers for the model tests (imported by name; conftest.py module names are not unique across folders)."""

from __future__ import annotations

import numpy as np

from videopolicy.models.config import ModelConfig


def tiny_config(**overrides) -> ModelConfig:
    """The tiny preset at 64 px (8x8 latents), 3 cameras x 2 frames (7 U-Net frames)."""
    fields = {"preset": "tiny", "frames_per_camera": 2, "image_size": 64, **overrides}
    return ModelConfig(**fields)


def synthetic_clips(n: int, cameras: int = 3, frames: int = 2, size: int = 64, horizon: int = 32,
                    seed: int = 0) -> dict:
    """Clips of a bright square moving on a dark background, seen by `cameras` cameras.

    Clip i starts at a random position and moves with a random velocity; each camera sees it shifted
    and in its own colour. The action chunk (horizon, 7) is determined by the first frame: xy velocity
    toward the image centre that decays over the chunk, zeros, and a gripper command that varies
    smoothly with the start (similar first frames, similar chunks: a learnable mapping).
    Returns the data side's batch format: frames uint8 (n, V, max(T, 1), H, W, 3) (frame 0 = the current
    frame, as the clips cut it), actions (n, horizon, 7), text.
    """
    rng = np.random.default_rng(seed)
    frames_out = np.full((n, cameras, max(frames, 1), size, size, 3), 20, dtype=np.uint8)
    actions = np.zeros((n, horizon, 7), dtype=np.float32)
    box = size // 4
    colours = [(230, 60, 60), (60, 230, 60), (60, 60, 230), (230, 230, 60)]
    for i in range(n):
        start = rng.uniform(0.15, 0.6, size=2) * size
        vel = rng.uniform(-0.08, 0.08, size=2) * size
        for v in range(cameras):
            shift = np.array([v * size // 10, -v * size // 12])
            for t in range(max(frames, 1)):
                y, x = np.clip(start + vel * t + shift, 0, size - box).astype(int)
                frames_out[i, v, t, y:y + box, x:x + box] = colours[v % len(colours)]
        toward_centre = (size / 2 - (start + box / 2)) / size * 2  # in about [-1, 1]
        decay = np.linspace(1.0, 0.2, horizon)[:, None]
        actions[i, :, :2] = np.clip(toward_centre[None] * decay, -1, 1)
        actions[i, :, 6] = np.clip((start[1] / size - 0.375) * 8.0, -1.0, 1.0)  # smooth in the start
    return {"frames": frames_out, "actions": actions, "text": ["move the square to the centre"] * n}
