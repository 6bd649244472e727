"""A meta-training config from YAML with command-line overrides (``--set KEY.PATH=VALUE``)."""

from __future__ import annotations

import pytest

from hf_l3rs.meta.cli import build_parser
from hf_l3rs.meta.config import MetaTrainConfig
from hf_l3rs.optim.config import ConfigError

YAML = """\
name: tiny
family: two_moons_mlp
family_kwargs: {k_min: 5, k_max: 8}
nes: {popsize: 4, sigma: 0.05, learning_rate: 0.05}
generations: 2
"""


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(YAML)
    return path


def test_dotted_settings_merge_into_the_yaml(config_file) -> None:
    settings = ["nes.sigma=0.02", "family_kwargs.k_max=50", "generations=3", "l3rs.base_lr=3e-3", "trackers=[]"]
    args = build_parser().parse_args(["--config", str(config_file), *(x for s in settings for x in ("--set", s))])
    config = MetaTrainConfig.from_yaml(args.config, args.set)
    assert config.nes == {"popsize": 4, "sigma": 0.02, "learning_rate": 0.05}  # the rest of the block kept
    assert config.family_kwargs == {"k_min": 5, "k_max": 50}
    assert config.generations == 3 and config.trackers == [] and config.l3rs == {"base_lr": 0.003}  # 3e-3 a number
    assert MetaTrainConfig.from_yaml(config_file).nes["sigma"] == 0.05  # the file is untouched


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("nes.sigmaa=0.1", "sigmaa"),  # a typo is named by the block that checks it
        ("nes.sigma", "expected KEY=VALUE"),
        ("nes..sigma=1", "expected KEY=VALUE"),
        ("generations.every=2", "generations is int"),
        ("generation=3", "generation"),
    ],
)
def test_bad_settings_are_refused_by_name(config_file, setting, message) -> None:
    with pytest.raises(ConfigError, match=message):
        MetaTrainConfig.from_yaml(config_file, [setting])
