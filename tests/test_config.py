"""One source of configuration truth: the Serve YAML, its schema, and the KubeRay manifest."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from serving.launch import DEFAULT_CONFIG, load_config
from serving.settings import AppSettings

ROOT = Path(__file__).resolve().parents[1]


def test_serve_yaml_validates_against_ray_and_our_schema():
    from ray.serve.schema import ServeDeploySchema

    cfg = load_config(DEFAULT_CONFIG)
    ServeDeploySchema.model_validate(cfg)
    (app,) = cfg["applications"]
    AppSettings(**app["args"])  # extra keys are errors
    assert cfg["http_options"]["host"] == "127.0.0.1"  # loopback by default


def test_serve_build_of_the_module_level_app_carries_the_yaml_options(tmp_path):
    out = tmp_path / "built.yaml"
    serve = Path(sys.executable).with_name("serve")
    p = subprocess.run([str(serve), "build", "serving.app:app", "-o", str(out)], cwd=ROOT, capture_output=True, text=True,
                       timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 0, p.stderr
    (built,) = yaml.safe_load(out.read_text())["applications"]
    assert built["import_path"] == "serving.app:app"
    (repo,) = load_config(DEFAULT_CONFIG)["applications"]
    got_by_name = {d["name"]: d for d in built["deployments"]}
    assert set(got_by_name) == {d["name"] for d in repo["deployments"]}
    for want in repo["deployments"]:
        got = got_by_name[want["name"]]
        for key, value in want.items():  # every option the YAML sets, and nothing from the decorators
            assert got[key] == value, (want["name"], key)


def test_decorators_set_no_deployment_option():
    from serving.app import CriticDeployment, Ingress, ResultCache

    for dep in (CriticDeployment, Ingress, ResultCache):
        assert dep._deployment_config.user_configured_option_names <= {"name"}, dep.name  # Serve requires the name


def test_batch_user_config_and_limits_are_typed_with_one_set_of_defaults():
    from contract.video import VideoLimits
    from serving.settings import IngressSettings

    with pytest.raises(ValueError, match="max_batch_size"):
        load_config(DEFAULT_CONFIG, user_config={"max_batch_size": 0})
    assert IngressSettings().video_limits() == VideoLimits()
    assert "batching" not in AppSettings.model_fields  # batching is the Critic's user_config, only


def test_model_none_is_the_model_free_critic_and_the_default_is_the_shipped_one():
    from critic.loading import DEFAULT_CRITIC
    from serving.settings import CriticSettings

    assert CriticSettings(model=None).model == "model-free"
    assert CriticSettings().model == DEFAULT_CRITIC and Path(DEFAULT_CRITIC, "config.json").is_file()


def test_unknown_setting_is_an_error():
    with pytest.raises(ValueError, match="extra"):
        AppSettings(critic={"modle": "typo"})


def test_rayservice_embeds_the_serve_yaml():
    assert subprocess.run([sys.executable, "k8s/render.py", "--check"], cwd=ROOT).returncode == 0
    manifest = yaml.safe_load((ROOT / "k8s" / "rayservice.yaml").read_text())
    embedded = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    repo = load_config(DEFAULT_CONFIG)
    (e_app,), (r_app,) = embedded["applications"], repo["applications"]
    assert e_app["import_path"] == r_app["import_path"] and e_app["name"] == r_app["name"]
    assert embedded["grpc_options"]["grpc_servicer_functions"] == repo["grpc_options"]["grpc_servicer_functions"]
    critic = {d["name"]: d for d in e_app["deployments"]}["Critic"]
    assert critic["ray_actor_options"]["num_gpus"] == 1  # GPU replicas on the cluster
    assert critic["user_config"] == {d["name"]: d for d in r_app["deployments"]}["Critic"]["user_config"]
    AppSettings(**e_app["args"])


def test_clients_import_without_torch():
    code = "import sys, clients, clients.grpc; assert 'torch' not in sys.modules, 'torch imported'; print('ok')"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr


@pytest.mark.parametrize("path", sorted((ROOT / "trainer" / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_trainer_configs_parse(path):
    from trainer.cli import METHODS

    method = yaml.safe_load(path.read_text())["method"]
    cfg = METHODS[method][0].from_yaml(path)
    assert Path(cfg.prompts).is_file() and cfg.pipeline.endswith("tiny-cogvideox")


def test_unknown_trainer_setting_is_an_error(tmp_path):
    from trainer.config import ConfigError
    from trainer.rwr_config import RWRConfig

    p = tmp_path / "c.yaml"
    p.write_text("method: rwr\npipeline: x\nprompts: y\noutput_dir: z\nlearning_rate: 1\n")
    with pytest.raises(ConfigError, match="unknown settings"):
        RWRConfig.from_yaml(p)
    with pytest.raises(ConfigError, match="8k\\+1"):
        RWRConfig(pipeline="x", prompts="y", output_dir="z", num_frames=10)
