"""A random-init VAE fitted to a clip stage's frames (``vae.fit_steps``), once per store.

SVD's VAE was trained before its U-Net; a random one keeps too little of a small frame for the
policy (models/config.py, VAEConfig.fit_steps, has the measurement). The fit is an autoencoder on
the training split's frames of every camera (models/vae.fit_vae), stored under

    <store>/vae_fit/<key>/vae.safetensors

where the key hashes the random VAE's weights, the clip stage, the fit's settings and the seed. The
first training stage that needs it fits it under a file lock; the others, and a resumed stage, load it.
The policy directories carry the fitted weights (vae.safetensors), so evaluation needs no store.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_model, save_model

from videopolicy.data.clips import ClipDataset, read_demo_shard
from videopolicy.models.config import VAEConfig
from videopolicy.models.vae import fit_vae
from videopolicy.store import stable_hash
from videopolicy.train.latents import vae_digest
from videopolicy.util import file_lock

log = logging.getLogger(__name__)

FIT_VERSION = 1


def fitted_vae(vae, ds: ClipDataset, v: VAEConfig, seed: int = 0) -> Path:
    """Replace `vae`'s random weights with the fitted ones (fitting them first when the store has none).

    Returns the weights' path. `v` must have ``fit_steps > 0`` (a resolved VAEConfig).
    """
    root = ds.path.parents[1]  # the store: shard paths in the index are relative to it
    key = stable_hash("vae_fit", FIT_VERSION, vae_digest(vae), ds.path.name, ds.cameras, ds.clips.image_size,
                      v.fit_steps, v.fit_batch_size, v.fit_lr, v.latent_std, seed)
    path = root / "vae_fit" / key / "vae.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path.parent / "lock"):
        if not path.exists():
            frames = [f for rel in sorted(ds.index("train").shard.unique())
                      for f in read_demo_shard(str(root / rel), ds.cameras, ds.clips.image_size)[0]]
            sizes = np.array([len(f) for f in frames])
            starts = np.concatenate([[0], np.cumsum(sizes)])

            def batch(g: torch.Generator) -> torch.Tensor:  # frames drawn uniformly over every camera's frames
                picks = torch.randint(int(starts[-1]), (v.fit_batch_size,), generator=g).numpy()
                owner = np.searchsorted(starts, picks, side="right") - 1
                x = np.stack([frames[o][p - starts[o]] for o, p in zip(owner, picks)])
                return torch.from_numpy(x).permute(0, 3, 1, 2).float() / 127.5 - 1.0

            curve = fit_vae(vae, batch, v.fit_steps, v.fit_lr, v.latent_std or 0.0,
                            torch.Generator().manual_seed(seed))
            log.info("VAE fitted on %d frames in %d steps: reconstruction MSE %s", starts[-1], v.fit_steps,
                     " -> ".join(f"{c:.4f}" for c in curve))
            with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
                save_model(vae, tmp.name)
            Path(tmp.name).rename(path)
    load_model(vae, str(path))
    return path
