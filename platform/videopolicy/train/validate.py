"""Validation on the held-out demos' clips (``train.stage1/stage2.val_every``): numbers that say whether a
policy has learned, where the training loss cannot.

The EDM action loss averages over noise levels, most of them low, where the noisy actions give the answer
away. Measured on 4 Lift demos (tiny preset, 64 px): a stage 2 whose training loss fell to 0.055 sampled
chunks that missed the demos' by MSE 0.27, worse than their mean chunk (0.14), and scored 0/4 closed
loop. The metrics, computed on rank 0 with the weights the checkpoint would export (the EMA's if any):

    val_loss             the stage's loss on up to ``val_clips`` held-out clips, fixed noise draws, no dropout
    val_action_mse       chunks drawn with the model's sampler vs the demos' (normalised units, padding masked)
    val_action_mse_mean  the same for the held-out clips' own mean chunk: a reference that ignores the
                         observation (a policy must get below it; a draw from the chunks' spread scores ~2x)
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Optional

import numpy as np
import torch

COLUMNS = ("demo_uid", "task", "language", "shard", "start")


@contextmanager
def exported_weights(params: dict[str, torch.nn.Parameter], ema: Optional[dict[str, torch.Tensor]]):
    """Within the block the trainable parameters hold the EMA weights (the checkpoint's policy), if any."""
    if not ema:
        yield
        return
    saved = {n: p.detach().clone() for n, p in params.items()}
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(ema[n])
    try:
        yield
    finally:
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(saved[n])


class Validator:
    """A fixed set of held-out clips (evenly spaced over the val split), batched once by the trainer's collate."""

    def __init__(self, ds, collate: Callable[[dict], dict], cached: bool, clips: int):
        idx = ds.index("val")
        if len(idx) == 0:
            raise ValueError(f"{ds.path}: no held-out clips (clips.val_fraction is 0 or too few demos)")
        rows = idx.iloc[np.unique(np.linspace(0, len(idx) - 1, min(clips, len(idx))).round().astype(int))]
        self.batch = collate({k: rows[k].to_numpy() for k in COLUMNS})
        self.cached = cached

    def inputs(self) -> dict:
        b = self.batch
        if self.cached:  # the posterior means: no draw, the same targets every time
            return {"latents": b["latent_mean"], "cond_latents": b["cond_latents"], "actions": b["actions"],
                    "text": b["language"]}
        return {"frames": b["frames"], "actions": b["actions"], "text": b["language"]}

    @torch.no_grad()
    def __call__(self, model, mode: str, draws: int = 2) -> dict[str, float]:
        device = model.device
        was_training = model.training
        model.eval()
        try:
            inputs = self.inputs()
            loss = np.mean([float(model(inputs, mode, torch.Generator(device=device).manual_seed(k)).loss)
                            for k in range(draws)])
            out = {"val_loss": float(loss)}
            if mode != "stage1":
                out.update(self.action_errors(model, torch.Generator(device=device).manual_seed(0)))
        finally:
            model.train(was_training)
        return out

    def action_errors(self, model, generator: torch.Generator) -> dict[str, float]:
        b = self.batch
        if self.cached:
            from videopolicy.models.sampler import sample

            drawn = sample(model, b["cond_latents"].to(model.device).float(), model.embed_text(b["language"]),
                           model.cfg.sampler, generator).actions
        else:  # each clip's current frames: (B, V, H, W, 3)
            drawn = model.sample_actions(b["frames"][:, :, 0], b["language"], None, generator).actions
        target = b["actions"].float()
        mask = b["action_mask"].float()[..., None] if "action_mask" in b else torch.ones_like(target[..., :1])
        weight = mask.expand_as(target)

        def mse(pred: torch.Tensor) -> float:
            return float(((pred.cpu().float() - target) ** 2 * weight).sum() / weight.sum())

        mean_chunk = (target * weight).sum(0) / weight.sum(0).clamp(min=1)
        return {"val_action_mse": mse(drawn), "val_action_mse_mean": mse(mean_chunk.expand_as(target))}
