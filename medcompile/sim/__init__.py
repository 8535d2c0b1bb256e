"""A simulated model family with known optima, for measuring optimizers.

Seeded and deterministic, microseconds per call, usable wherever an LM is (medcompile's
backends and `dspy.BaseLM`). It recognises the questions in a prompt, reacts to the
instruction, exemplars, reasoning, option order and temperature as its profile says,
and replies in the format the prompt asks for. See docs/simulator.md.
"""
from .lm import SimBudgetExceeded, SimLM
from .profile import BUILTIN_PROFILES, Profile, ProfileError, RANGES, builtin_names, load_profile, random_profiles
from .world import SimWorld, world_for_spec

__all__ = ["BUILTIN_PROFILES", "Profile", "ProfileError", "RANGES", "SimBudgetExceeded", "SimLM", "SimWorld",
           "builtin_names", "load_profile", "random_profiles", "world_for_spec"]
