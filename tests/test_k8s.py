"""The deployable cluster: k8s/rayservice.yaml against KubeRay's RayService CRD (vendored in
k8s/crd/), the ports, keys, GPUs and volumes it wires, and the Dockerfile that builds its images
(no Docker daemon runs here: its COPY sources, tags and build steps are checked instead)."""

from __future__ import annotations

import copy
import fnmatch
import os
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "k8s"))
import render  # noqa: E402  (k8s/render.py)

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _strict(schema):
    """Kubernetes' strict field validation: an object that lists its properties takes no others."""
    if isinstance(schema, dict):
        schema = {k: _strict(v) for k, v in schema.items()}
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@pytest.fixture(scope="module")
def validator():
    crd = yaml.load((ROOT / "k8s" / "crd" / "ray.io_rayservices.yaml").read_text(), Loader=_Loader)
    assert crd["spec"]["names"]["kind"] == "RayService"
    (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return jsonschema.Draft7Validator(_strict(v1["schema"]["openAPIV3Schema"]))


@pytest.fixture(scope="module")
def manifest():
    return yaml.safe_load((ROOT / "k8s" / "rayservice.yaml").read_text())


def _errors(validator, doc) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def test_rayservice_validates_against_kuberay_crd(validator, manifest):
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == "RayService"
    assert _errors(validator, manifest) == []


def test_the_validation_catches_misplaced_and_mistyped_fields(validator, manifest):
    misplaced = copy.deepcopy(manifest)
    worker = misplaced["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    worker["template"]["spec"]["containers"][0]["tolerations"] = worker["template"]["spec"].pop("tolerations")
    assert any("tolerations" in e for e in _errors(validator, misplaced))
    mistyped = copy.deepcopy(manifest)
    mistyped["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["replicas"] = "one"
    assert any("replicas" in e for e in _errors(validator, mistyped))


def _containers(manifest):
    cluster = manifest["spec"]["rayClusterConfig"]
    head = cluster["headGroupSpec"]["template"]["spec"]
    (gpu,) = cluster["workerGroupSpecs"]
    return head, gpu["template"]["spec"]


def test_serve_ports_are_named_for_kuberay_and_match_the_serve_config(manifest):
    serve = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    want = {"serve": serve["http_options"]["port"], "serve-grpc": serve["grpc_options"]["port"]}
    for pod in _containers(manifest):
        ports = {p["name"]: p["containerPort"] for p in pod["containers"][0]["ports"]}
        assert {n: ports.get(n) for n in want} == want  # KubeRay publishes only `serve` / `serve-*`
        assert not [n for n in ports if n in ("grpc", "http")]


def test_api_keys_come_from_a_mounted_secret_on_every_pod(manifest):
    for pod in _containers(manifest):
        (c,) = pod["containers"]
        env = {e["name"]: e["value"] for e in c["env"]}
        path = Path(env["LIFT_CRITIC_API_KEYS_FILE"])
        volumes = {v["name"]: v for v in pod["volumes"]}
        (mount,) = [m for m in c["volumeMounts"] if path.parent == Path(m["mountPath"])]
        assert volumes[mount["name"]]["secret"]["secretName"] == render.API_KEYS_SECRET and mount["readOnly"]


def test_gpu_workers_tolerate_gpu_taints_run_the_cuda_image_and_mount_the_checkpoint(manifest):
    head, gpu = _containers(manifest)
    assert head["containers"][0]["image"] == render.IMAGE and "tolerations" not in head
    assert gpu["containers"][0]["image"] == render.IMAGE_CUDA
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in gpu["tolerations"]
    assert gpu["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    serve = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    model = Path(serve["applications"][0]["args"]["critic"]["model"])
    mounts = [m for m in gpu["containers"][0]["volumeMounts"] if Path(m["mountPath"]) in model.parents]
    assert mounts and {v["name"]: v for v in gpu["volumes"]}[mounts[0]["name"]]["persistentVolumeClaim"]


# ---- the Dockerfile ------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    out, pending = [], ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        word, _, rest = pending.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        pending = ""
    return out


def test_every_copy_source_exists_and_is_in_the_build_context():
    ignored = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
               if ln.strip() and not ln.startswith("#")]
    copies = [shlex.split(args) for word, args in _instructions() if word == "COPY"]
    assert copies
    sources = [s for c in copies for s in c[:-1]]
    for src in sources:
        assert (ROOT / src).exists(), src
        assert not [p for p in ignored if fnmatch.fnmatch(src, p)], src
    # what the image runs: every package the project installs, the shipped critic, the Makefile
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {p.rstrip("*") for p in packages} <= set(sources)
    assert {"models", "Makefile", "pyproject.toml"} <= set(sources)
    assert Path(render.DEFAULT_CONFIG).relative_to(ROOT).parts[0] in sources


def test_the_tags_built_are_the_images_the_rayservice_names():
    text = (ROOT / "Dockerfile").read_text()
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert render.IMAGE.endswith(f":{version}")
    assert f"-t {render.IMAGE} ." in text and f"-t {render.IMAGE_CUDA} ." in text


def _env() -> dict[str, str]:
    env = {}
    for word, args in _instructions():
        if word in ("ENV", "ARG"):
            for item in shlex.split(args):
                k, _, v = item.partition("=")
                env[k] = v
    return env


def test_the_build_steps_name_make_targets_that_exist(tmp_path):
    runs = [args for word, args in _instructions() if word == "RUN"]
    (make,) = [r for r in runs if " make " in f" {r}" and "apt-get" not in r]  # the apt line installs make
    targets = shlex.split(make.split(" make ", 1)[1].split("&&")[0])
    env = {**os.environ, **_env(), "VENV": str(tmp_path / "venv")}
    p = subprocess.run(["make", "-n", *targets], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "torch==" in p.stdout and f"{tmp_path}/venv/bin/pip install" in p.stdout  # pinned torch, into VENV


@pytest.mark.slow
def test_the_build_steps_run_as_a_script_and_make_demo_runs(tmp_path):
    """The Dockerfile's steps on this machine (minutes): COPY into a fresh context, the RUN steps
    other than the system packages in a fresh venv, then `make demo` as the image would run it."""
    app = tmp_path / "app"
    env = {**{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}, **_env(),
           "VENV": str(tmp_path / "venv")}
    env.pop("PIP_INDEX_URL", None)
    app.mkdir()
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")  # as .dockerignore
    for word, args in _instructions():
        if word == "COPY":
            *srcs, dest = shlex.split(args)
            for src in srcs:
                target = app / (Path(src).name if dest.endswith("/") else dest)
                if (ROOT / src).is_dir():
                    shutil.copytree(ROOT / src, target, ignore=skip)
                else:
                    shutil.copy2(ROOT / src, target)
        elif word == "RUN" and "apt-get" not in args:
            script = args.replace('PIP_INDEX_URL="$TORCH_INDEX" PIP_EXTRA_INDEX_URL=https://pypi.org/simple ', "")
            script = script.replace("python -c", f"{tmp_path}/venv/bin/python -c")
            p = subprocess.run(["bash", "-euc", script], cwd=app, env=env, capture_output=True, text=True, timeout=1800)
            assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    p = subprocess.run(["make", "demo"], cwd=app, env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "service shut down" in p.stdout and "lift-critic-tiny" in p.stdout
