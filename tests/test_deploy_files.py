"""The nightly schedules and KubeRay manifests in deploy/ and .github/: real structure, consistency with
jobs/nightly.py and the installed Ray, and cron.sh's behaviour with a stub interpreter (no cluster)."""

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest
import ray
import yaml

ROOT = Path(__file__).resolve().parents[1]
CRON = ROOT / "deploy/nightly/cron.sh"
WORKFLOW = ROOT / ".github/workflows/nightly.yml"
RAYJOB = ROOT / "deploy/kuberay/rayjob-sweep.yaml"
RAYCRONJOB = ROOT / "deploy/kuberay/raycronjob-nightly.yaml"
CRONJOB = ROOT / "deploy/kuberay/cronjob-nightly.yaml"
README = ROOT / "deploy/README.md"
ALL = [CRON, WORKFLOW, RAYJOB, RAYCRONJOB, CRONJOB, README]
CRON_EXPR = re.compile(r"^(\S+\s+){4}\S+$")


def load(path):
    return yaml.safe_load(path.read_text())


def ray_cluster_checks(cluster):
    assert cluster["rayVersion"] == ray.__version__
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"  # drivers and the MLflow client only
    containers = [c for g in [head] + cluster["workerGroupSpecs"] for c in g["template"]["spec"]["containers"]]
    for c in containers:  # one image for every pod, tagged with the cluster's Ray version
        assert f"ray{ray.__version__}-py311-gpu" in c["image"], c["image"]
        assert any(e["name"] == "MLFLOW_TRACKING_URI" and "secretKeyRef" in e["valueFrom"] for e in c["env"])
    assert cluster["authOptions"]["mode"] == "token"
    return head, cluster["workerGroupSpecs"]


def test_every_file_exists():
    for p in ALL:
        assert p.is_file(), p


def test_cron_sh_parses_and_is_executable():
    subprocess.run(["bash", "-n", str(CRON)], check=True)
    assert CRON.stat().st_mode & stat.S_IXUSR
    text = CRON.read_text()
    assert re.search(r"^#\s+(\S+\s+){5}\S*deploy/nightly/cron\.sh", text, re.M), "crontab line in a comment"
    assert '.venv/bin/python' in text and "jobs/nightly.py" in text and "--timeout-s" in text
    assert '--address "$RAY_DASHBOARD_ADDRESS"' in text


@pytest.fixture
def fake_checkout(tmp_path):
    """A checkout whose .venv/bin/python is a stub: records its argv and env, exits with $STUB_RC."""
    co = tmp_path / "checkout"
    (co / ".venv/bin").mkdir(parents=True)
    stub = co / ".venv/bin/python"
    stub.write_text('#!/usr/bin/env bash\n'
                    'printf "%s\\n" "$@" > "$STUB_ARGS"\n'
                    'printf "token=%s mode=%s mlflow=%s\\n" "$RAY_AUTH_TOKEN" "$RAY_AUTH_MODE" '
                    '"$MLFLOW_TRACKING_URI" >> "$STUB_ARGS"\n'
                    'echo "job nightly-x submitted"; [ -n "$STUB_MSG" ] && echo "$STUB_MSG" >&2\n'
                    'exit "$STUB_RC"\n')
    stub.chmod(0o755)
    token = tmp_path / "token"
    token.write_text("s3cr3t\n")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "VIDEOPOLICY_CHECKOUT": str(co),
           "NIGHTLY_ENV_FILE": str(tmp_path / "absent.env"), "RAY_AUTH_TOKEN_FILE": str(token),
           "MLFLOW_TRACKING_URI": "http://mlflow.internal:5000", "NIGHTLY_LOG_DIR": str(tmp_path / "logs"),
           "STUB_ARGS": str(tmp_path / "args"), "STUB_RC": "0", "STUB_MSG": ""}
    return tmp_path, env


@pytest.mark.parametrize("stub_rc,msg,expected", [
    ("0", "", 0),
    ("1", "nightly nightly-20250101: regression", 1),
    ("1", "nightly nightly-20250101: timed out after 60s; job nightly-x stopped", 2),  # nightly.py exits 1
    ("2", "", 2),
])
def test_cron_sh_propagates_the_verdict(fake_checkout, stub_rc, msg, expected):
    tmp, env = fake_checkout
    env.update(STUB_RC=stub_rc, STUB_MSG=msg, NIGHTLY_TIMEOUT_S="60", NIGHTLY_STORE="/shared/nightly/")
    rc = subprocess.run(["bash", str(CRON)], env=env).returncode
    assert rc == expected
    args = (tmp / "args").read_text().splitlines()
    assert args[0] == "jobs/nightly.py"
    assert args[args.index("--address") + 1] == "http://127.0.0.1:8265"
    assert args[args.index("--timeout-s") + 1] == "60"
    date = args[args.index("--date") + 1]
    assert re.fullmatch(r"\d{8}", date)
    assert args[args.index("--store") + 1] == f"/shared/nightly/{date}"
    assert "token=s3cr3t mode=token mlflow=http://mlflow.internal:5000" in args
    log = (tmp / "logs" / f"nightly-{date}.log").read_text()
    assert "job nightly-x submitted" in log and f"exit {expected}" in log
    assert "s3cr3t" not in log  # the token never reaches the log


def test_cron_sh_refuses_to_run_without_mlflow_or_token(fake_checkout):
    tmp, env = fake_checkout
    no_mlflow = {k: v for k, v in env.items() if k != "MLFLOW_TRACKING_URI"}
    assert subprocess.run(["bash", str(CRON)], env=no_mlflow, capture_output=True).returncode == 3
    no_token = {**env, "RAY_AUTH_TOKEN_FILE": str(tmp / "missing")}
    assert subprocess.run(["bash", str(CRON)], env=no_token, capture_output=True).returncode == 3
    assert not (tmp / "args").exists()  # nothing was submitted


def test_workflow_schedule_runs_nightly():
    wf = load(WORKFLOW)
    triggers = wf.get("on", wf.get(True))  # YAML 1.1 reads the key `on` as True
    assert all(CRON_EXPR.match(s["cron"]) for s in triggers["schedule"])
    assert "workflow_dispatch" in triggers
    assert wf["concurrency"]["cancel-in-progress"] is False
    job = wf["jobs"]["nightly"]
    assert "self-hosted" in job["runs-on"]
    assert job["timeout-minutes"] * 60 > 21600  # a backstop above jobs/nightly.py's own timeout
    for name in ("RAY_AUTH_TOKEN", "MLFLOW_TRACKING_URI", "RAY_DASHBOARD_ADDRESS"):
        assert job["env"][name] == f"${{{{ secrets.{name} }}}}"
    assert job["env"]["RAY_AUTH_MODE"] == "token"
    runs = [s.get("run", "") for s in job["steps"]]
    assert any(r.strip() == "make install" for r in runs)
    nightly = next(r for r in runs if "jobs/nightly.py" in r)
    assert '--address "$RAY_DASHBOARD_ADDRESS"' in nightly and "--timeout-s" in nightly
    assert "pipefail" in nightly  # tee must not hide the exit status
    upload = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "always()" and upload["with"]["path"].endswith(".log")
    tunnel = next(s for s in job["steps"] if "ssh " in s.get("run", ""))
    assert "-L 127.0.0.1:8265:127.0.0.1:8265" in tunnel["run"]


def test_rayjob_sweep():
    rj = load(RAYJOB)
    assert (rj["apiVersion"], rj["kind"]) == ("ray.io/v1", "RayJob")
    spec = rj["spec"]
    assert spec["entrypoint"].split()[:2] == ["python", "jobs/sweep_ablations.py"]
    assert "--sweep sweeps/robocasa_paper.yaml" in spec["entrypoint"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] > 0 and spec["activeDeadlineSeconds"] > 0
    assert yaml.safe_load(spec["runtimeEnvYAML"])["working_dir"] == "/home/ray/videopolicy"
    _, workers = ray_cluster_checks(spec["rayClusterSpec"])
    groups = {g["groupName"]: g for g in workers}
    a100 = groups["a100"]["template"]["spec"]
    limits = a100["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == 8
    shm = next(m for m in a100["containers"][0]["volumeMounts"] if m["mountPath"] == "/dev/shm")
    assert next(v for v in a100["volumes"] if v["name"] == shm["name"])["emptyDir"]["medium"] == "Memory"
    rollout = groups["cpu-rollout"]
    assert "nvidia.com/gpu" not in rollout["template"]["spec"]["containers"][0]["resources"]["limits"]
    custom = yaml.safe_load(rollout["rayStartParams"]["resources"].strip('"').replace('\\"', '"'))
    assert custom == {"rollout": 64}  # the custom resource rollout actors request (as in cluster.yaml)


def test_raycronjob_nightly():
    rc = load(RAYCRONJOB)
    assert (rc["apiVersion"], rc["kind"]) == ("ray.io/v1", "RayCronJob")
    spec = rc["spec"]
    assert CRON_EXPR.match(spec["schedule"]) and spec["timeZone"]
    job = spec["jobTemplate"]
    entry = job["entrypoint"]
    assert entry.split()[:2] == ["python", "jobs/sweep_ablations.py"]
    assert "--sweep sweeps/nightly.yaml" in entry
    assert "--run-id nightly-$(date -u +%Y%m%d)" in entry  # jobs/nightly.py's run id: <sweep name>-<UTC date>
    assert load(ROOT / "sweeps/nightly.yaml")["name"] == "nightly"
    assert job["shutdownAfterJobFinishes"] is True and job["activeDeadlineSeconds"] > 0
    ray_cluster_checks(job["rayClusterSpec"])
    text = RAYCRONJOB.read_text()
    assert "RayCronJob=true" in text and "1.6" in text and "cronjob-nightly.yaml" in text


def test_cronjob_nightly():
    cj = load(CRONJOB)
    assert (cj["apiVersion"], cj["kind"]) == ("batch/v1", "CronJob")
    spec = cj["spec"]
    assert spec["concurrencyPolicy"] == "Forbid" and CRON_EXPR.match(spec["schedule"])
    job = spec["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    c = pod["containers"][0]
    argv = c["command"] + c["args"]
    assert argv[:2] == ["python", "jobs/nightly.py"]
    assert re.fullmatch(r"http://[a-z0-9-]+-head-svc(\.[a-z0-9.-]+)?:8265", argv[argv.index("--address") + 1])
    assert job["activeDeadlineSeconds"] > float(argv[argv.index("--timeout-s") + 1])  # nightly.py stops first
    env = {e["name"]: e for e in c["env"]}
    assert env["RAY_AUTH_MODE"]["value"] == "token"
    assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "auth_token"
    assert "secretKeyRef" in env["MLFLOW_TRACKING_URI"]["valueFrom"]


def test_referenced_scripts_and_sweeps_exist():
    named = set()
    for p in ALL:
        named |= set(re.findall(r"(?<![\w/])((?:jobs|sweeps)/[\w.-]+\.(?:py|yaml))", p.read_text()))
    assert {"jobs/nightly.py", "jobs/sweep_ablations.py", "sweeps/nightly.yaml", "sweeps/robocasa_paper.yaml"} <= named
    missing = sorted(n for n in named if not (ROOT / n).is_file())
    assert not missing, missing


def test_nothing_listens_on_all_interfaces():
    any_interface = ".".join("0" * 4)
    for p in ALL:
        assert any_interface not in p.read_text(), p
