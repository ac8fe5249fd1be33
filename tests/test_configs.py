"""Every config group option composes, maps onto the real APIs, and bad choices fail with the options listed."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import zoo
from conftest import REPO_ROOT

CONFIGS = REPO_ROOT / "configs"
GROUPS = ["model", "data", "optim", "sched", "aug", "trainer", "logger", "callbacks", "experiment"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def test_required_options_exist() -> None:
    need = {
        "model": {"mobilenetv3", "mobilenetv3_small", "mobilenetv1", "mobilenetv2", "shufflenetv1", "shufflenetv2",
                  "ghostnet", "resnet18", "resnet50", "resnet50d", "seresnet50", "custom"},
        "data": {"mini", "imagenette", "imagefolder", "imagenet100"},
        "optim": {"sgd", "adamw", "rmsprop"},
        "sched": {"cosine", "step"},
        "aug": {"none", "basic", "randaugment", "trivialaugment", "mixup"},
        "trainer": {"cpu", "gpu", "ddp"},
        "logger": {"csv", "tensorboard"},
    }
    for group, names in need.items():
        assert names <= set(options(group)), (group, names - set(options(group)))


@pytest.mark.parametrize("group", GROUPS)
def test_every_option_composes(compose_cfg, group: str) -> None:
    for name in options(group):
        extra = ["data.root=/tmp/x"] if (group, name) == ("data", "imagefolder") else []
        extra += ["model.name=resnet34"] if (group, name) == ("model", "zoo") else []
        cfg = compose_cfg(f"{group}={name}", *extra, tiny=False)
        assert cfg["model"]["name"] and cfg["trainer"]["max_epochs"] >= 1
        assert Path(cfg["paths"]["output_dir"]).is_absolute()


def test_model_configs_map_to_create_model(compose_cfg) -> None:
    from zoo.models.arch import OVERRIDES

    allowed = set(inspect.signature(zoo.create_model).parameters) | set(OVERRIDES)
    assert set(OVERRIDES) | {"name", "weights", "weights_from"} <= set(compose_cfg("model=resnet18")["model"])
    names = set(zoo.list_models())
    for name in set(options("model")) - {"zoo"}:
        cfg = compose_cfg(f"model={name}")["model"]
        assert set(cfg) <= allowed, (name, set(cfg) - allowed)
        if name == "custom":
            assert "arch" in cfg
        else:
            assert cfg["name"] in names, name


def test_model_files_only_choose_a_name() -> None:
    """Every key lives once, in model/zoo.yaml; the other files pick a model (and custom.yaml its table)."""
    import yaml

    for name in set(options("model")) - {"zoo"}:
        cfg = yaml.safe_load((CONFIGS / "model" / f"{name}.yaml").read_text())
        assert cfg["defaults"] == ["zoo"], name
        assert set(cfg) <= {"defaults", "name", "arch"}, (name, sorted(cfg))


@pytest.mark.parametrize("choice", [["model=zoo", "model.name=shufflenetv1_g8_150"],
                                    ["model=shufflenetv1", "model.name=shufflenetv1_g8_150"]])
def test_any_registered_model_is_selectable(compose_cfg, choice) -> None:
    cfg = compose_cfg(*choice)
    assert cfg["model"]["name"] == "shufflenetv1_g8_150"
    net = zoo.create_model(num_classes=10, **{k: v for k, v in cfg["model"].items() if v is not None})
    assert net.model_config["name"] == "shufflenetv1_g8_150"


def test_model_zoo_without_a_name_is_an_error(compose_cfg) -> None:
    from omegaconf.errors import InterpolationToMissingValueError, MissingMandatoryValue

    with pytest.raises((MissingMandatoryValue, InterpolationToMissingValueError), match="model.name"):
        compose_cfg("model=zoo")


def test_custom_yaml_network_builds(compose_cfg) -> None:
    cfg = compose_cfg("model=custom")["model"]
    net = zoo.create_model(num_classes=10, **{k: v for k, v in cfg.items() if v is not None})
    assert net.total_stride == 32
    rebuilt = zoo.create_model(**net.model_config)
    assert sum(p.numel() for p in rebuilt.parameters()) == sum(p.numel() for p in net.parameters())


def test_experiments_compose_with_valid_models(compose_cfg) -> None:
    for name in options("experiment"):
        cfg = compose_cfg(f"experiment={name}", tiny=False)
        assert cfg["model"]["name"] in zoo.list_models(), name


def test_command_line_overrides_reach_every_group(compose_cfg) -> None:
    cfg = compose_cfg("optim=rmsprop", "optim.eps=0.0316", "sched=step", "sched.decay_epochs=2", "aug=mixup",
                      "aug.mixup.switch_prob=0.3", "trainer=ddp", "trainer.sync_batchnorm=true", "ema.enabled=true",
                      "model.width=0.75", "loss.label_smoothing=0.2", tiny=False)
    assert cfg["optim"]["name"] == "rmsproptf" and cfg["optim"]["eps"] == 0.0316
    assert cfg["sched"]["decay_epochs"] == 2 and cfg["aug"]["mixup"]["switch_prob"] == 0.3
    assert cfg["aug"]["mixup"]["mixup_alpha"] == 0.2 and cfg["aug"]["mixup"]["cutmix_alpha"] == 1.0
    assert cfg["trainer"]["strategy"] == "ddp" and cfg["trainer"]["sync_batchnorm"] is True
    assert cfg["model"]["width"] == 0.75 and cfg["loss"]["label_smoothing"] == 0.2


def test_unknown_choice_lists_available_options(compose_cfg) -> None:
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException) as err:
        compose_cfg("model=mobilenetv9")
    msg = str(err.value)
    assert "mobilenetv9" in msg and "mobilenetv3_small" in msg and "shufflenetv2" in msg


def test_eval_config_composes(compose_cfg) -> None:
    cfg = compose_cfg("ckpt_path=/tmp/a.ckpt", config_name="eval")
    assert cfg["ckpt_path"] == "/tmp/a.ckpt" and cfg["output_json"].endswith("eval.json")
