"""The policy server actor: many simulator workers send observations, it batches and runs the policy.

An asyncio actor: every `act` call puts its request in a queue and awaits its chunk. One batching
loop takes up to ``max_batch`` requests, waiting at most ``batch_timeout_s`` after the first one
(or less: as soon as every worker that is expected has asked), runs the policy in a thread so new
requests keep arriving meanwhile, and resolves each caller's future with its own chunk.

GPU: the server asks Ray for a GPU when the cluster has one; the model runs on ``cuda`` then.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import time
from typing import Optional

import numpy as np

from videopolicy.evaluate.policies import ActRequest, PolicySpec, load_policy

log = logging.getLogger(__name__)


class PolicyServer:
    """Use through `policy_server_actor(...)` (a Ray actor class with max_concurrency)."""

    def __init__(self, spec: PolicySpec, suite: str, cameras: tuple[str, ...], action_dim: int,
                 max_batch: int, batch_timeout_s: float, expected_clients: int, sampler_steps: int = 0):
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.policy = load_policy(spec, suite, tuple(cameras), action_dim, sampler_steps, device)
        self.policy_name = spec.kind
        self.max_batch, self.timeout = int(max_batch), float(batch_timeout_s)
        self.expected = max(1, min(int(expected_clients), self.max_batch))
        self.queue: Optional[asyncio.Queue] = None
        self.stats = {"batches": 0, "requests": 0, "compute_s": 0.0, "device": device, "pid": os.getpid()}
        self._loop_task: Optional[asyncio.Task] = None
        # One dedicated thread runs the model: torch's intra-op thread pool belongs to the calling thread,
        # and hopping between executor threads re-creates it (measured, tiny preset on CPU, 1 torch
        # thread: 340 ms per call on the default executor, 230 ms on this one).
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="policy")

    def _start(self) -> None:
        if self.queue is None:
            self.queue = asyncio.Queue()
            self._loop_task = asyncio.get_running_loop().create_task(self._batch_loop())

    async def act(self, request: ActRequest) -> np.ndarray:
        """(L, D) float32 action chunk for one observation."""
        self._start()
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put((request, fut))
        return await fut

    async def _batch_loop(self) -> None:
        from videopolicy.evaluate.metrics import policy_queue_depth

        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.timeout
            while len(batch) < self.max_batch:
                if len(batch) >= self.expected and self.queue.empty():
                    break  # every worker we expect has asked: waiting longer only adds latency
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), left))
                except asyncio.TimeoutError:
                    break
            policy_queue_depth().set(self.queue.qsize(), tags={"policy": self.policy_name})
            requests = [r for r, _ in batch]
            t0 = time.perf_counter()
            try:
                for r in requests:
                    if r.chunk_index == 0:
                        self.policy.reset(r.episode_key, r.text)
                chunks = await loop.run_in_executor(self._executor, self.policy.act, requests)
            except Exception as e:  # noqa: BLE001 - every caller of this batch gets the error
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            self.stats["compute_s"] += time.perf_counter() - t0
            self.stats["batches"] += 1
            self.stats["requests"] += len(batch)
            for (_, fut), chunk in zip(batch, chunks):
                if not fut.done():
                    fut.set_result(chunk)

    async def info(self) -> dict:
        import resource

        return dict(self.stats, mean_batch=self.stats["requests"] / max(1, self.stats["batches"]),
                    max_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def policy_server_actor(num_gpus: float = 0.0, num_cpus: float = 1.0, env_vars: Optional[dict] = None,
                        max_restarts: int = 3, name: Optional[str] = None):
    """The Ray actor class, configured. max_task_retries=0: a lost request is retried by its worker's
    episode (an infrastructure error), never replayed silently into a running episode."""
    import ray

    opts = dict(num_cpus=num_cpus, num_gpus=num_gpus, max_restarts=max_restarts, max_task_retries=0,
                max_concurrency=1000, runtime_env={"env_vars": dict(env_vars or {})})
    if name:
        opts["name"] = name
    return ray.remote(PolicyServer).options(**opts)
