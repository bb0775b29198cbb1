"""A small learnable clip dataset for training tests (videopolicy.data.synthetic: a block moving across
each camera whose velocity is the action): real HDF5 -> the real clip stage (Ray Data) -> ClipDataset."""

from __future__ import annotations

from videopolicy.config import config_from_dict
from videopolicy.data.synthetic import write_moving_block_demos

CAMS = ["agentview", "robot0_eye_in_hand"]
SIZE = 64


def write_demos(path, task: str, n_demos: int, length: int, seed: int) -> str:
    return write_moving_block_demos(path, task, n_demos, length, seed, tuple(CAMS), SIZE)


def platform_config(files: dict[str, str], store, model: dict | None = None, **train):
    """Tiny model, 2 cameras x 2 predicted frames (video horizon 8, stride 4) at 64 px, 16-step chunks."""
    return config_from_dict({
        "name": "train-test",
        "store": str(store),
        "demos": {"source": "files", "cameras": CAMS, "files": [{"path": p, "task": t} for t, p in files.items()]},
        "clips": {"video_horizon": 8, "frame_stride": 4, "action_horizon": 16, "image_size": SIZE,
                  "val_fraction": 0.2},
        "model": {"preset": "tiny", **(model or {})},
        "train": {"workers": 1, "cpus_per_worker": 0.5, **train},
    })
