"""Profiles: the parameters of one simulated model, as data (JSON).

A profile says how a simulated model reacts to a prompt. Per call the simulator computes
a logit for each displayed option (see `model.py`):

    logit_j = skill * [option j is gold] + distractor(q, option j) + bias * [j is the preferred position]
              + refine_effect * (share of shown attempts answering j) + prompt_noise * Gumbel(prompt, replicate)
    skill   = base_skill - difficulty_sd * difficulty(q) + instruction effect
              + cot_effect * [reasoning asked] + rationale_demo_effect * [reasoning asked] * (share of exemplars with rationales)
              + demo_effect * (1 - exp(-n_exemplars / demo_scale)) + relevance_effect * (1 - exp(-n_same_topic / demo_scale))
              + temperature_effect * temperature

Temperature-0 calls answer argmax(logit); sampled calls add sampling_noise * temperature * Gumbel(request seed).
Instruction effect = the sum of the latent effects (sd `instruction_sd`, drawn per world seed) of the pool phrases
the instruction contains, plus `instruction_noise` * N(0, 1) hashed from the instruction's text.

Parameter ranges used by `random_profiles(n, seed)` (uniform within each range; also in docs/simulator.md):

    base_skill            0.0 .. 2.0       difficulty_sd        1.0 .. 2.5      distractor_sd      0.5 .. 1.2
    position_bias         0.0 .. 1.5       prompt_noise         0.2 .. 1.5      sampling_noise     0.3 .. 1.5
    temperature_effect   -0.4 .. 0.0       cot_effect          -0.6 .. 0.6      rationale_demo_effect -0.1 .. 0.3
    demo_effect          -0.2 .. 0.3       relevance_effect     0.0 .. 0.8      demo_scale         1.0 .. 4.0
    instruction_sd        0.0 .. 0.5       instruction_noise    0.0 .. 0.15     refine_effect      0.0 .. 1.0
    proposal_quality      0.0 .. 1.0       preferred_position   drawn per world seed (null)
"""
from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

PROFILE_SCHEMA = "medcompile.sim.profile"

#: (low, high) for each numeric parameter: what `random_profiles` draws from, and what a
#: profile file may hold (values outside are refused, so a typo cannot make a model absurd).
RANGES: dict[str, tuple[float, float]] = {
    "base_skill": (0.0, 2.0),
    "difficulty_sd": (1.0, 2.5),
    "distractor_sd": (0.5, 1.2),
    "position_bias": (0.0, 1.5),
    "prompt_noise": (0.2, 1.5),
    "sampling_noise": (0.3, 1.5),
    "temperature_effect": (-0.4, 0.0),
    "cot_effect": (-0.6, 0.6),
    "rationale_demo_effect": (-0.1, 0.3),
    "demo_effect": (-0.2, 0.3),
    "relevance_effect": (0.0, 0.8),
    "demo_scale": (1.0, 4.0),
    "instruction_sd": (0.0, 0.5),
    "instruction_noise": (0.0, 0.15),
    "refine_effect": (0.0, 1.0),
    "proposal_quality": (0.0, 1.0),
}
#: Limits a hand-written profile must respect (wider than the random ranges).
LIMITS: dict[str, tuple[float, float]] = {k: (min(lo, -5.0), max(hi, 10.0)) for k, (lo, hi) in RANGES.items()}
LIMITS.update({"difficulty_sd": (0.0, 5.0), "distractor_sd": (0.0, 5.0), "prompt_noise": (0.0, 10.0),
               "sampling_noise": (0.0, 10.0), "demo_scale": (0.1, 20.0), "instruction_sd": (0.0, 5.0),
               "instruction_noise": (0.0, 5.0), "proposal_quality": (0.0, 5.0), "position_bias": (0.0, 10.0)})


class ProfileError(ValueError):
    """A profile file or name cannot be used (unknown name, bad field, value out of range)."""


@dataclass(frozen=True)
class Profile:
    name: str
    description: str = ""
    base_skill: float = 1.0
    difficulty_sd: float = 1.0
    distractor_sd: float = 0.5
    position_bias: float = 0.5
    preferred_position: int | None = None
    prompt_noise: float = 0.8
    sampling_noise: float = 0.8
    temperature_effect: float = -0.2
    cot_effect: float = 0.3
    rationale_demo_effect: float = 0.2
    demo_effect: float = 0.2
    relevance_effect: float = 0.4
    demo_scale: float = 2.0
    instruction_sd: float = 0.3
    instruction_noise: float = 0.1
    refine_effect: float = 0.5
    proposal_quality: float = 0.3

    def to_dict(self) -> dict[str, Any]:
        return {"schema": PROFILE_SCHEMA, **asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "profile") -> "Profile":
        if not isinstance(d, dict):
            raise ProfileError(f"{where}: a profile must be a JSON object")
        d = {k: v for k, v in d.items() if k != "schema"}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ProfileError(f"{where}: unknown field(s) {unknown}; known: {sorted(known)}")
        if not isinstance(d.get("name"), str) or not d["name"]:
            raise ProfileError(f"{where}: needs a non-empty 'name'")
        for k, (lo, hi) in LIMITS.items():
            if k in d:
                v = d[k]
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
                    raise ProfileError(f"{where}: {k} must be a number within {lo}..{hi}, got {v!r}")
                d[k] = float(v)
        pp = d.get("preferred_position")
        if pp is not None and (isinstance(pp, bool) or not isinstance(pp, int) or pp < 0):
            raise ProfileError(f"{where}: preferred_position must be null or a non-negative integer, got {pp!r}")
        return cls(**d)


def builtin_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("medcompile.sim").joinpath("profiles").iterdir()
                  if p.name.endswith(".json"))


def load_profile(name_or_path: "str | Path | Profile") -> Profile:
    """A builtin profile by name (`strong_chat`), or a profile JSON file by path."""
    if isinstance(name_or_path, Profile):
        return name_or_path
    s = str(name_or_path)
    if s in builtin_names():
        text = resources.files("medcompile.sim").joinpath("profiles", f"{s}.json").read_text("utf-8")
        return Profile.from_dict(json.loads(text), where=f"builtin profile {s}")
    p = Path(s).expanduser()
    if not p.is_file():
        raise ProfileError(f"unknown simulator profile {s!r}: not a builtin ({', '.join(builtin_names())}) "
                           "and no such file")
    try:
        d = json.loads(p.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProfileError(f"cannot read profile file {p}: {exc}") from None
    return Profile.from_dict(d, where=str(p))


def random_profiles(n: int, seed: int = 0) -> list[Profile]:
    """`n` profiles drawn uniformly from `RANGES` (see the module docstring), named random_<seed>_<i>."""
    rng = random.Random(f"medcompile.sim.random_profiles:{seed}")
    out = []
    for i in range(n):
        vals = {k: round(rng.uniform(lo, hi), 4) for k, (lo, hi) in RANGES.items()}
        out.append(replace(Profile(name=f"random_{seed}_{i}", description="drawn from the documented ranges"),
                           **vals))
    return out


class _Builtins(dict):
    """Loads builtin profiles on first access (they are package data)."""

    def __missing__(self, key: str) -> Profile:
        if key not in builtin_names():
            raise KeyError(key)
        self[key] = load_profile(key)
        return self[key]

    def __iter__(self):  # type: ignore[override]
        return iter(builtin_names())

    def __len__(self) -> int:
        return len(builtin_names())

    def keys(self):  # type: ignore[override]
        return builtin_names()

    def items(self):  # type: ignore[override]
        return [(k, self[k]) for k in builtin_names()]

    def values(self):  # type: ignore[override]
        return [self[k] for k in builtin_names()]

    def __contains__(self, key: object) -> bool:
        return key in builtin_names()


BUILTIN_PROFILES: dict[str, Profile] = _Builtins()
