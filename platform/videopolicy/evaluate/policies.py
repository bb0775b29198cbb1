"""Policies the evaluation harness can run, all behind one interface and one transport.

``Policy.act(requests) -> chunks``: a batch of `ActRequest` (multi-view images of one step, the task
sentence, a per-request noise seed) -> one action chunk per request, ``(L, D)`` float32 in the suite's
command space. The simulator worker executes the first ``execute_steps`` actions and asks again.

* `CheckpointPolicy`: a trained Video Policy (or DP-ResNet) checkpoint, ``VideoPolicy.from_pretrained``;
  frames are resized to the model's image size and ordered as its training cameras.
* `RandomPolicy`: uniform actions in [-1, 1] (success near 0: the harness must not invent successes).
* `ReplayPolicy`: the recorded actions of the training demonstrations, open loop, on episodes that
  reset to each demo's own scene (`Suite.demo_episodes`): near 100% when the suite reproduces the
  scenes and the physics the demos were recorded in, so it checks reset, action mapping and the
  success check against data rather than against a second piece of our code.
* `ExpertPolicy`: the scripted expert. Its decision needs privileged simulator state that only the
  worker holds, so the worker computes the expert's next action (``SimEnv.expert_action()``) and
  sends it with the observation as ``privileged``; the server returns it as a one-step chunk
  (``execute_steps = 1``: the expert is closed-loop). So the expert exercises exactly the harness
  path a model does (request, batching, chunk execution, success check, ledger), while its success
  rate (>= 90% when demos were generated) checks the simulator protocol end to end.

A `PolicySpec` names a policy without loading it (it travels to actors and into the ledger);
``policy_id`` is its identity in results: the kind, the checkpoint's files (name, size, mtime) and
the settings that change behaviour (executed steps per chunk, sampler steps).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from videopolicy.store import stable_hash

#: Sanity policies by name (known success rates); anything else is a checkpoint directory.
SANITY_POLICIES = ("expert", "random", "replay")


@dataclass(frozen=True)
class ActRequest:
    """One observation of one episode. images: (V, H, W, 3) uint8 in the protocol's camera order."""

    episode_key: str
    chunk_index: int  # replans so far in this episode (0 at reset)
    images: np.ndarray
    text: str
    seed: int  # noise seed of this request: (policy seed, episode, chunk) only, never the batch
    privileged: Optional[np.ndarray] = None  # (D,) expert action, only for policies that ask for it
    step: int = 0  # environment steps executed so far in this episode


@dataclass(frozen=True)
class PolicySpec:
    kind: str  # "checkpoint" | "expert" | "random" | "replay"
    path: str = ""  # checkpoint directory (kind == "checkpoint")
    demos: tuple[tuple[str, str], ...] = ()  # (task, demo HDF5 path) pairs (kind == "replay")

    @classmethod
    def parse(cls, text: str) -> "PolicySpec":
        """``expert`` / ``random`` / ``replay`` or a checkpoint directory (replay: see `with_demos`)."""
        if text in SANITY_POLICIES:
            return cls(text)
        return cls("checkpoint", str(Path(text).expanduser().resolve()))

    def with_demos(self, demos: dict[str, str | Path]) -> "PolicySpec":
        """The replay policy over these demo files (task -> HDF5 path)."""
        return dataclasses.replace(self, demos=tuple(sorted((t, str(Path(p).resolve())) for t, p in demos.items())))

    def problems(self) -> list[str]:
        """What is wrong before anything starts (missing checkpoint files are named)."""
        if self.kind == "replay":
            if not self.demos:
                return ["the replay policy needs demo files (PolicySpec.with_demos; jobs/evaluate.py finds the config's)"]
            return [f"replay: demo file of {t} not found: {p}" for t, p in self.demos if not Path(p).is_file()]
        if self.kind in SANITY_POLICIES:
            return []
        if self.kind != "checkpoint":
            return [f"unknown policy kind {self.kind!r}; use a checkpoint directory or one of {SANITY_POLICIES}"]
        d = Path(self.path)
        if not d.is_dir():
            return [f"checkpoint directory not found: {d}"]
        # what PolicyModel.save_pretrained writes (extra.json carries the action normaliser)
        return [f"checkpoint {d} has no {n} (not a PolicyModel.save_pretrained directory)"
                for n in ("config.json", "model.safetensors", "extra.json") if not (d / n).exists()]

    def execute_steps(self, default: int) -> int:
        return 1 if self.kind == "expert" else int(default)

    @property
    def privileged(self) -> bool:
        return self.kind == "expert"

    def policy_id(self, execute_steps: int, sampler_steps: int = 0) -> str:
        if self.kind == "replay":  # which recordings, by content identity (name, size, mtime)
            files = [(t, Path(p).name, Path(p).stat().st_size, Path(p).stat().st_mtime_ns) for t, p in self.demos]
            return f"replay:x{execute_steps}:{stable_hash(files, length=12)}"
        if self.kind != "checkpoint":
            return f"{self.kind}:x{self.execute_steps(execute_steps)}"
        d = Path(self.path)
        files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in d.iterdir() if p.is_file())
        digest = stable_hash(str(d), files, execute_steps, sampler_steps, NOISE_SCHEME, length=12)
        return f"checkpoint:{d.name}:{digest}"


#: How a checkpoint's sampling noise is drawn, part of its policy_id so that a ledger never mixes episodes
#: drawn two ways: one generator per request (CheckpointPolicy.act). Until 2026-12-04 it was one generator
#: per server batch, seeded by the batch's requests, so an episode's noise depended on its batch-mates.
NOISE_SCHEME = "per-request"


class Policy(ABC):
    """Batched policy. Stateless across requests (per-episode state travels in the request)."""

    def reset(self, episode_key: str, text: str) -> None:
        """Called by the server on the first request of an episode (chunk_index 0)."""

    @abstractmethod
    def act(self, requests: list[ActRequest]) -> list[np.ndarray]:
        """One (L, D) float32 chunk per request."""


class RandomPolicy(Policy):
    def __init__(self, action_dim: int = 7, horizon: int = 32):
        self.action_dim, self.horizon = action_dim, horizon

    def act(self, requests: list[ActRequest]) -> list[np.ndarray]:
        return [np.random.default_rng(r.seed).uniform(-1.0, 1.0, (self.horizon, self.action_dim)).astype(np.float32)
                for r in requests]


class ExpertPolicy(Policy):
    def act(self, requests: list[ActRequest]) -> list[np.ndarray]:
        out = []
        for r in requests:
            if r.privileged is None:
                raise ValueError(f"{r.episode_key}: the expert policy needs the worker's privileged action "
                                 "(the suite has no scripted expert for this task)")
            out.append(np.asarray(r.privileged, dtype=np.float32).reshape(1, -1))
        return out


class ReplayPolicy(Policy):
    """Recorded demo actions. Episode ``<suite>/<task>/demo/<i>`` replays the i-th demo of the task's file
    (`Suite.demo_episodes` made the same list); a chunk is the next `horizon` recorded actions from the
    request's step. Past the recording's end it holds still (zero motion, last gripper command)."""

    def __init__(self, demos: tuple[tuple[str, str], ...], action_dim: int, horizon: int = 32):
        self.files = dict(demos)
        self.action_dim, self.horizon = action_dim, horizon
        self._actions: dict[str, list[np.ndarray]] = {}  # task -> actions of each demo, file order

    def _recording(self, episode_key: str) -> np.ndarray:
        from videopolicy.data.hdf5 import DemoFile

        _suite, task, scene, index = episode_key.rsplit("/", 3)
        if scene != "demo" or task not in self.files:
            raise ValueError(f"{episode_key}: the replay policy runs only on demo episodes (Suite.demo_episodes) "
                             f"of {sorted(self.files)}")
        if task not in self._actions:
            with DemoFile(self.files[task]) as f:
                self._actions[task] = [f.read(d, [], self.action_dim).actions for d in f.demo_names()]
        return self._actions[task][int(index)]

    def act(self, requests: list[ActRequest]) -> list[np.ndarray]:
        out = []
        for r in requests:
            actions = self._recording(r.episode_key)
            chunk = actions[r.step: r.step + self.horizon]
            if len(chunk) < self.horizon:
                hold = np.zeros((self.horizon - len(chunk), actions.shape[1]), np.float32)
                hold[:, -1] = actions[-1, -1]
                chunk = np.concatenate([chunk, hold])
            out.append(chunk.astype(np.float32))
        return out


class CheckpointPolicy(Policy):
    """A trained checkpoint. Frames (V, H, W, 3) at the protocol's cameras -> the model's cameras/size."""

    def __init__(self, path: str, suite: str, protocol_cameras: tuple[str, ...], sampler_steps: int = 0,
                 device: str = "cpu"):
        from videopolicy.models.policy import VideoPolicy

        self.policy = VideoPolicy.from_pretrained(path, suite=suite, device=device)
        if sampler_steps:
            self.policy.sampler = dataclasses.replace(self.policy.sampler, steps=sampler_steps)
        cams = self.policy.cameras or list(protocol_cameras)
        missing = [c for c in cams if c not in protocol_cameras]
        if missing:
            raise ValueError(f"checkpoint {path} was trained on cameras {cams}; the protocol renders "
                             f"{list(protocol_cameras)} (missing {missing})")
        self.view_index = [list(protocol_cameras).index(c) for c in cams]
        self.image_size = int(self.policy.model.cfg.image_size)

    def _frames(self, images: np.ndarray) -> np.ndarray:
        from videopolicy.data.clips import resize_frames

        views = images[self.view_index]
        if views.shape[1] != self.image_size:  # the same INTER_AREA resize the clips were made with
            views = resize_frames(views, self.image_size)
        return views

    def act(self, requests: list[ActRequest]) -> list[np.ndarray]:
        import torch

        obs = np.stack([self._frames(r.images) for r in requests])  # (B, V, h, w, 3)
        # one generator per request (models.edm.Noise): an episode's noise, and so its outcome, does not
        # depend on which other episodes' requests the server batched with it
        device = self.policy.model.device
        self.policy.generator = [torch.Generator(device=device).manual_seed(r.seed) for r in requests]
        with torch.no_grad():
            chunks = self.policy.act(obs, [r.text for r in requests])  # (B, 32, D)
        return [np.asarray(c, dtype=np.float32) for c in chunks]


def load_policy(spec: PolicySpec, suite: str, protocol_cameras: tuple[str, ...], action_dim: int,
                sampler_steps: int = 0, device: str = "cpu") -> Policy:
    if spec.kind == "random":
        return RandomPolicy(action_dim)
    if spec.kind == "expert":
        return ExpertPolicy()
    if spec.kind == "replay":
        return ReplayPolicy(spec.demos, action_dim)
    if spec.kind == "checkpoint":
        return CheckpointPolicy(spec.path, suite, protocol_cameras, sampler_steps, device)
    raise ValueError(f"unknown policy kind {spec.kind!r}")


def save_untrained_checkpoint(directory: str | Path, cfg, seed: int = 0) -> Path:
    """An untrained policy checkpoint shaped by `cfg` (``cfg.model_config()``: the tiny preset on CPU),
    in the layout `CheckpointPolicy` loads, with a [-1, 1] normaliser. For harness smoke tests and
    benchmarks, where the cost of a real model call matters and its success rate does not."""
    import torch

    from videopolicy.models.build import build_model
    from videopolicy.normalize import ActionNormalizer

    torch.manual_seed(seed)
    model = build_model(cfg.model_config())
    dim = cfg.clips.action_dim
    cameras = list(cfg.clips.cameras or cfg.demos.cameras)
    return model.save_pretrained(directory, extra={"normalizer": ActionNormalizer([-1.0] * dim, [1.0] * dim).to_dict(),
                                                   "cameras": cameras})
