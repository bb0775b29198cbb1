"""Synthetic demonstrations with a known, learnable structure, for tests and benchmarks of the training
path (no simulator): a square moving across each camera's image whose velocity is the action."""

from __future__ import annotations

import numpy as np

from videopolicy.data.hdf5 import DemoWriter
from videopolicy.store import stable_seed


def write_moving_block_demos(path, task: str, n_demos: int, length: int, seed: int,
                             cameras: tuple[str, ...] = ("agentview", "robot0_eye_in_hand"), size: int = 64) -> str:
    """One robomimic-format HDF5 file: actions[:, :2] = the block's velocity, actions[:, 6] = gripper."""
    rng = np.random.default_rng(seed)
    side = size // 5
    with DemoWriter(str(path), {"env_name": task, "type": 1, "env_kwargs": {}}) as w:
        for _ in range(n_demos):
            start = rng.uniform(side, size - 2 * side, size=2)
            vel = rng.uniform(-0.5, 0.5, size=2) + (0.6 if stable_seed("synthetic", task) % 2 else -0.6)
            pos = start[None] + np.arange(length)[:, None] * vel[None]
            actions = np.zeros((length, 7))
            actions[:, :2] = vel
            actions[:, 6] = np.where(np.arange(length) > length // 2, 1.0, -1.0)
            frames = {}
            for v, cam in enumerate(cameras):
                img = np.full((length, size, size, 3), 40, np.uint8)
                for t, (y, x) in enumerate(np.clip(pos, 0, size - side).astype(int)):
                    img[t, y:y + side, x:x + side, v % 3] = 230
                frames[cam] = img
            w.add(actions=actions, frames=frames, language=f"move the block ({task})")
    return str(path)
