"""The training config holds the director's settings once: a ``director`` section, read back as a
typed ``DirectorConfig`` that the sampler, the canvas limits and the trainer all use."""

from __future__ import annotations

import warnings

import pytest

from flowsteer.director import DirectorConfig
from flowsteer.errors import UserError
from flowsteer.training.config import config_from_dict, config_to_dict, load_config


def test_the_director_section_is_a_typed_director_config_and_the_canvas_takes_its_limits():
    config = config_from_dict({"director": {"temperature": 0.9, "max_turns": 7, "max_action_tokens": 80,
                                            "context_budget": 4096, "usage_hints": False, "constrain": True}})
    d = config.director_config
    assert isinstance(d, DirectorConfig)
    assert (d.temperature, d.max_turns, d.max_action_tokens, d.context_budget, d.usage_hints) == (0.9, 7, 80, 4096, False)
    assert d.constraint is not None and d.constraint.max_new_tokens == 80  # actions end within the turn budget
    from flowsteer.training.setup import canvas_config, director_config

    assert director_config(config) is d and canvas_config(config).max_turns == 7


def test_small_model_preset_matches_what_run_and_eval_serve():
    config = config_from_dict({"director": {"preset": "small_model", "constrain": True, "temperature": 1.0}})
    served = DirectorConfig.small_model(constrained=True)
    d = config.director_config
    assert d.temperature == 1.0 and d.max_turns == served.max_turns == 10
    assert (d.context_budget, d.max_action_tokens, d.write_prompts) == (served.context_budget, served.max_action_tokens,
                                                                         served.write_prompts)
    # served greedily; a rollout samples, at the paper's temperature unless the config sets one
    assert served.temperature == 0.0
    assert config_from_dict({"director": {"preset": "small_model"}}).director_config.temperature == 0.6
    with pytest.raises(UserError, match=r"director.context_budget is 4096 but director.preset small_model uses 2048"):
        config_from_dict({"director": {"preset": "small_model", "context_budget": 4096}})
    with pytest.raises(UserError, match="constrain_options cannot be combined"):
        config_from_dict({"director": {"preset": "small_model", "constrain_options": {"max_list": 2}}})


def test_bad_director_settings_name_the_field():
    with pytest.raises(UserError, match=r"unknown config field 'director.max_turn'.*did you mean 'max_turns'"):
        config_from_dict({"director": {"max_turn": 5}})
    with pytest.raises(UserError, match="director.preset must be"):
        config_from_dict({"director": {"preset": "huge"}})
    with pytest.raises(UserError, match="director.temperature must be > 0"):
        config_from_dict({"director": {"temperature": 0.0}})
    with pytest.raises(UserError, match="max_turns must be >= 1"):
        config_from_dict({"director": {"max_turns": 0}})


def test_the_old_rollout_spellings_still_load_with_a_warning_and_move_into_the_section():
    old = {"rollout": {"temperature": 0.8, "max_new_tokens": 48, "max_turns": 6, "director_preset": "default",
                       "director_options": {"usage_hints": False}, "group_size": 2}}
    with pytest.warns(DeprecationWarning, match=r"rollout.temperature.*rollout.max_new_tokens.*'director' section"):
        config = config_from_dict(old)
    new = config_from_dict({"rollout": {"group_size": 2}, "director": {
        "temperature": 0.8, "max_action_tokens": 48, "max_turns": 6, "usage_hints": False}})
    assert config.director_config == new.director_config
    # one source: the rollout no longer holds them, the saved config has the section only
    assert config.rollout.temperature is None and config.rollout.max_new_tokens is None
    saved = config_to_dict(config)
    assert "temperature" not in saved["rollout"] and saved["director"]["max_action_tokens"] == 48
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a saved run config reloads without the deprecation
        assert config_from_dict(saved).director_config == new.director_config
    with pytest.raises(UserError, match=r"director.temperature is 0.5 but the deprecated rollout setting gives 0.8"):
        config_from_dict({"rollout": {"temperature": 0.8}, "director": {"temperature": 0.5}})


def test_the_shipped_configs_use_the_director_section():
    from importlib.resources import files

    for name in ("director-cpu.yaml", "tiny-cpu.yaml", "paper-gpu.yaml"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            config = load_config(str(files("flowsteer.training") / "configs" / name))
        assert config.director and isinstance(config.director_config, DirectorConfig)
    shipped = load_config(str(files("flowsteer.training") / "configs" / "director-cpu.yaml")).director_config
    assert shipped == DirectorConfig.small_model(constrained=True, temperature=1.0, top_p=1.0)
