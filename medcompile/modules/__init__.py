"""Program modules. Import order registers every type that a program file may name."""
from .base import MODULE_TYPES, Module, ModuleError, Prediction, RunContext, derive_seed
from .retrieve import Retrieve
from .vote import Vote, plurality
from .predict import Predict, SelfCoT
from .shuffle import Shuffle, permute, permutation_for
from .refine import Refine
from .route import Route

__all__ = ["MODULE_TYPES", "Module", "ModuleError", "Prediction", "RunContext", "derive_seed", "Retrieve", "Vote",
           "plurality", "Predict", "SelfCoT", "Shuffle", "permute", "permutation_for", "Refine", "Route"]
