"""One base class for every layer around a model: `layers()` follows exactly these."""
from __future__ import annotations

import inspect

from medcompile.lm import cache, faults, meter, retry
from medcompile.lm.base import LMRequest
from medcompile.lm.cache import CachedLM, DiskCache
from medcompile.lm.faults import FaultyLM
from medcompile.lm.meter import BudgetedLM, MeteredLM
from medcompile.lm.registry import layers, lm_settings, wrap_lm
from medcompile.lm.retry import LimitedLM, RetryingLM
from medcompile.lm.scripted import ConstantLM
from medcompile.lm.wrapper import LMWrapper


def test_every_layer_in_the_package_is_a_wrapper():
    layer_classes = [MeteredLM, BudgetedLM, CachedLM, LimitedLM, RetryingLM, FaultyLM]
    assert all(issubclass(c, LMWrapper) for c in layer_classes)
    # and no class in these modules sets up `inner` by hand any more
    for mod in (meter, retry, cache, faults):
        assert "self.inner = inner" not in inspect.getsource(mod)


def test_wrappers_forward_model_and_mode_and_calls(tmp_path):
    backend = ConstantLM(" B", model="const", mode="chat")
    stack = MeteredLM(BudgetedLM(FaultyLM(CachedLM(LimitedLM(RetryingLM(backend), 2), DiskCache(tmp_path)), []), 5))
    assert [type(x) for x in layers(stack)] == [MeteredLM, BudgetedLM, FaultyLM, CachedLM, LimitedLM, RetryingLM,
                                                ConstantLM]
    assert all((x.model, x.mode) == ("const", "chat") for x in layers(stack))
    assert stack.complete(LMRequest(model="const", mode="chat")).text == " B"


class ClientBackend(ConstantLM):
    """A backend that happens to have an attribute called `inner` (an HTTP client, say)."""

    def __init__(self) -> None:
        super().__init__(" A", model="client-backed")
        self.inner = object()


def test_layers_stop_at_the_backend_even_if_it_has_an_inner_attribute(tmp_path):
    stack = wrap_lm(ClientBackend(), cache_dir=tmp_path)
    assert isinstance(layers(stack)[-1], ClientBackend)
    s = lm_settings(stack)
    assert s["model"] == "client-backed" and s["backend"]["backend"] == "scripted"


def test_each_layer_describes_itself(tmp_path):
    s = lm_settings(wrap_lm(ConstantLM("x"), cache_dir=tmp_path, max_concurrency=3, max_retries=2))
    assert s["cache"] is True and s["max_concurrency"] == 3 and s["retry"]["max_retries"] == 2
    assert "spec" not in s  # a stack built by hand has no spec
    bare = lm_settings(MeteredLM(ConstantLM("x")))
    assert bare["cache"] is False and "retry" not in bare and "max_concurrency" not in bare
    stack = wrap_lm(ConstantLM("x"), cache=False)
    stack.spec = "scripted-test"
    assert lm_settings(stack)["spec"] == "scripted-test"
