"""train.latent_cache: the cached batches are the uncached ones, encoded once; a training stage runs on them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from videopolicy.config import ConfigError
from videopolicy.data.clips import ClipCutter
from videopolicy.models import build_model
from videopolicy.models.vae import encode_pixels, to_pixels
from videopolicy.train.latents import LatentCache
from videopolicy.train.launch import TrainSpec, run_training

COLS = ["demo_uid", "task", "language", "shard", "start"]


def test_cached_windows_are_the_posteriors_of_the_uncached_frames(make_cfg, clips, caplog):
    model = build_model(make_cfg().model_config())
    index = clips.index("train")
    every = {k: index[k].to_numpy() for k in COLS}
    # rows whose window differs from the next step's (the synthetic block moves < 1 px on some steps):
    # an off-by-one between the cache and the clips must show
    here = ClipCutter(clips)(every)["frames"]
    later = ClipCutter(clips)({**every, "start": every["start"] + 1})["frames"]
    moving = np.nonzero((here != later).reshape(len(index), -1).any(axis=1))[0]
    rows = index.iloc[moving[:: max(1, len(moving) // 4)][:4]]
    refs = {k: rows[k].to_numpy() for k in COLS}
    cache = LatentCache(clips, model.vae, cond_aug=0.0, seed=3)
    got = cache(refs)
    cut = ClipCutter(clips)(refs)  # the frames the uncached path would encode
    b, v, t = cut["frames"].shape[:3]
    mode = encode_pixels(model.vae, to_pixels(torch.from_numpy(np.array(cut["frames"]))).flatten(0, 2), 16)
    assert got["latent_mean"].shape == (b, v, t, *mode.shape[1:])
    torch.testing.assert_close(got["latent_mean"].flatten(0, 2), mode, atol=1e-4, rtol=1e-4)
    assert (got["latent_std"] > 0).all()
    # cond_aug 0: the conditioning latents are the current frames' modes, i.e. each window's frame 0
    torch.testing.assert_close(got["cond_latents"], got["latent_mean"][:, :, 0], atol=1e-4, rtol=1e-4)
    np.testing.assert_array_equal(got["actions"].numpy(), cut["actions"])
    assert got["language"] == list(cut["language"])
    # a second cache over the same VAE reads the stored files instead of encoding again
    with caplog.at_level("INFO", logger="videopolicy.train.latents"):
        LatentCache(clips, model.vae, cond_aug=0.0, seed=3)
    assert "(0 encoded now)" in caplog.text
    # another VAE (other weights) gets other latents, never the first one's files
    other = build_model(dataclasses.replace(make_cfg().model_config(), init_seed=7)).vae
    assert LatentCache(clips, other, cond_aug=0.0, seed=3).dir != cache.dir


def test_latent_cache_refuses_colour_jitter(make_cfg):
    with pytest.raises(ConfigError, match="latent_cache"):
        make_cfg(latent_cache=True, color_jitter=[0.2, 0.2, 0.2, 0.05])


def test_stage1_trains_on_cached_latents(make_cfg, clips, tmp_path):
    cfg = make_cfg(latent_cache=True, color_jitter=[0, 0, 0, 0],
                   stage1={"steps": 4, "batch_size": 4, "lr": 1e-3, "checkpoint_every": 4, "log_every": 2})
    result = run_training(TrainSpec("stage1", cfg, clips.path, name="cached", storage_path=str(tmp_path / "runs"),
                                    tracking_uri=f"sqlite:///{tmp_path}/mlflow.db"))
    assert result.step == 4
    assert list((clips.path.parents[1] / "latents").glob("*/*.npz")), "the trainer wrote no cached latents"
