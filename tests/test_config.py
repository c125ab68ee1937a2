import pytest

from tune_robust.config import TrialConfig, apply_override, coerce, flatten
from tune_robust.errors import ConfigError


def test_coerce_by_annotation():
    assert coerce("8/255", float, "k") == pytest.approx(8 / 255)
    assert coerce("9,7,1", tuple[int, int, int], "k") == (9, 7, 1)
    assert coerce("[0.75, 0.9]", tuple[float, ...], "k") == (0.75, 0.9)
    assert coerce("none", str | None, "k") is None
    assert coerce("yes", bool, "k") is True
    for value, tp in (("3.5", int), ("x", float), ("1,2", tuple[int, int, int]), (True, int)):
        with pytest.raises(ConfigError, match="expects"):
            coerce(value, tp, "k")


def test_relative_step_and_auto_eps():
    cfg = TrialConfig.from_dict(
        {"data": {"dataset": "cifar10"}, "attack": {"name": "pgd", "eps": "auto", "step": "eps/10"}}
    )
    assert cfg.attack.kwargs["eps"] == pytest.approx(8 / 255)
    assert cfg.attack.kwargs["step"] == pytest.approx(0.8 / 255)


def test_overrides_are_validated():
    cfg = {"model": {"arch": "wrn"}, "attack": {"name": "pgd"}}
    apply_override(cfg, "model.depths", "9,7,1")
    apply_override(cfg, "attack.step", "eps/4")
    assert cfg["model"]["depths"] == (9, 7, 1) and cfg["attack"]["step"] == "eps/4"
    with pytest.raises(ConfigError, match=r"valid keys: .*train\.epochs"):
        apply_override(cfg, "train.epoch", "3")
    with pytest.raises(ConfigError, match="expects int"):
        apply_override(cfg, "train.epochs", "three")


def test_trial_config_round_trip_and_range_checks():
    cfg = TrialConfig.from_dict({"model": {"arch": "wrn", "depths": [1, 3, 5]}})
    again = TrialConfig.from_dict(cfg.to_dict())
    assert again == cfg
    assert flatten(cfg.to_dict())["model.depths"] == (1, 3, 5)
    with pytest.raises(ConfigError, match="epochs must be >= 1"):
        TrialConfig.from_dict({"train": {"epochs": 0}})
    with pytest.raises(ConfigError, match="known training methods"):
        TrialConfig.from_dict({"method": {"name": "magic"}})
    with pytest.raises(ConfigError, match="moved to its own section"):
        TrialConfig.from_dict({"train": {"method": "pgd_at"}})
    with pytest.raises(ConfigError, match="unknown config section"):
        TrialConfig.from_dict({"optimizer": {}})
