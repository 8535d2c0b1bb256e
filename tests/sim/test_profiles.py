"""Profiles are data: builtins load, random profiles stay within the documented ranges, bad files are refused."""
from __future__ import annotations

import json

import pytest

from medcompile.sim import BUILTIN_PROFILES, RANGES, Profile, ProfileError, load_profile, random_profiles

REQUIRED = {"strong_chat", "base_model", "instruction_sensitive", "knn_sensitive", "noisy_sampler", "nothing_helps"}


def test_builtins_load_by_name() -> None:
    assert REQUIRED <= set(BUILTIN_PROFILES)
    for name in REQUIRED:
        p = load_profile(name)
        assert p.name == name and p.description
        assert BUILTIN_PROFILES[name] == p


def test_builtin_shapes_match_their_names() -> None:
    b = BUILTIN_PROFILES
    assert b["strong_chat"].cot_effect > 0 and b["strong_chat"].relevance_effect > 0
    assert b["base_model"].cot_effect < 0 and b["base_model"].position_bias > b["strong_chat"].position_bias
    assert b["knn_sensitive"].cot_effect == 0 and b["knn_sensitive"].relevance_effect >= 0.5
    assert b["instruction_sensitive"].instruction_sd > 2 * b["strong_chat"].instruction_sd
    assert b["noisy_sampler"].prompt_noise > 2 * b["strong_chat"].prompt_noise
    n = b["nothing_helps"]
    assert (n.cot_effect < 0 and n.demo_effect < 0 and n.instruction_sd == 0 and n.position_bias == 0
            and n.prompt_noise == 0)


def test_load_by_path_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    p = random_profiles(1, seed=5)[0]
    f = tmp_path / "p.json"
    f.write_text(p.to_json())
    assert load_profile(str(f)) == p


def test_random_profiles_are_seeded_and_within_ranges() -> None:
    a, b, c = random_profiles(4, seed=1), random_profiles(4, seed=1), random_profiles(4, seed=2)
    assert a == b and a != c
    assert len({x.name for x in a}) == 4
    for p in a + c:
        for k, (lo, hi) in RANGES.items():
            assert lo <= getattr(p, k) <= hi, k


@pytest.mark.parametrize("bad, match", [
    ({"name": "x", "cot_effect": 99}, "cot_effect"),
    ({"name": "x", "colour": 1}, "unknown field"),
    ({"cot_effect": 0.1}, "name"),
    ({"name": "x", "preferred_position": -1}, "preferred_position"),
])
def test_bad_profiles_are_refused(tmp_path, bad, match) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(bad))
    with pytest.raises(ProfileError, match=match):
        load_profile(str(f))


def test_unknown_name_names_the_builtins() -> None:
    with pytest.raises(ProfileError, match="strong_chat"):
        load_profile("no_such_profile")
    assert isinstance(load_profile(Profile(name="inline")), Profile)
