"""A program file is data: loading (and running) one never imports, evaluates or unpickles.

While malicious files load, `builtins.__import__`, `eval`, `exec`, `compile`,
`pickle.loads/load`, `marshal.loads`, `importlib.import_module`, `os.system`,
`os.popen` and `subprocess.Popen` are traced, and `sys.modules` must not grow. The
payloads name code (module types like ``os.system``), smuggle template syntax
(Jinja ``{{ ''.__class__.__mro__ }}``, ``{% import os %}``, Python format fields like
``{0.__globals__}``), hide pickles in the embeddings, and carry classic
deserialisation gadgets in the free-form sections. Each is either refused with
`ProgramFileError` or loads as inert text that reaches the prompt byte for byte.
Every payload would touch a canary file if it ever ran. `medcompile serve` and
`medcompile run` refuse ``.py`` programs without importing them.
"""
from __future__ import annotations

import base64
import builtins
import contextlib
import copy
import hashlib
import importlib
import io
import json
import marshal
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from medcompile import Predict, Program, Refine, Retrieve, SelfCoT, Shuffle, Vote
from medcompile.bank import Bank
from medcompile.exemplar import Exemplar
from medcompile.lm.scripted import EchoLM
from medcompile.modules.base import ModuleError, Resolver
from medcompile.program.io import ProgramFileError, load, loads
from medcompile.question import Question
from tests.faults.faultkit import train_set

CANARY = Path("/tmp") / f"medcompile-canary-{os.getpid()}"
SHELL = f"touch {CANARY}"
PY = f"__import__('os').system('{SHELL}')"


class Evil:
    """Unpickling this would touch the canary."""

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (SHELL,))


@contextlib.contextmanager
def tripwires() -> Iterator[list[tuple[str, str]]]:
    """Record every import and every way of running code; restore everything after."""
    seen: list[tuple[str, str]] = []
    real_import = builtins.__import__

    def traced_import(name, globals=None, locals=None, fromlist=(), level=0):  # type: ignore[no-untyped-def]
        seen.append(("import", f"{'.' * level}{name}:{','.join(fromlist or ())}"))
        return real_import(name, globals, locals, fromlist, level)

    def wire(label: str, real: Any) -> Any:
        def traced(*a: Any, **k: Any) -> Any:
            if label == "importlib.import_module" and str(a[0]).startswith("medcompile.cli.commands."):
                seen.append(("import", str(a[0])))  # the CLI loading its own subcommands
                return real(*a, **k)
            seen.append((label, repr(a)[:200]))
            raise AssertionError(f"{label} called while handling a program file: {a!r:.200}")
        return traced

    targets = [(builtins, "eval"), (builtins, "exec"), (builtins, "compile"), (pickle, "loads"), (pickle, "load"),
               (pickle, "Unpickler"), (marshal, "loads"), (importlib, "import_module"), (os, "system"),
               (os, "popen"), (subprocess, "Popen"), (np, "load")]
    saved = [(obj, name, getattr(obj, name)) for obj, name in targets]
    before = set(sys.modules)
    builtins.__import__ = traced_import
    for obj, name, real in saved:
        setattr(obj, name, wire(f"{getattr(obj, '__name__', obj)}.{name}", real))
    try:
        yield seen
    finally:
        builtins.__import__ = real_import
        for obj, name, real in saved:
            setattr(obj, name, real)
    new = set(sys.modules) - before
    assert not new, f"modules imported while handling a program file: {sorted(new)}"
    ran = [s for s in seen if s[0] != "import"]
    assert not ran, ran
    # imports did happen (medcompile and argparse import lazily) but none loaded a module (checked
    # above) and none reached for what the payloads name
    payload_names = ("os", "subprocess", "posix", "pickle", "marshal", "builtins", "importlib", "ctypes",
                     "socket", "pty", "programs", "code", "runpy")
    bad = [s for s in seen if s[1].split(":", 1)[0].lstrip(".").split(".")[0] in payload_names]
    assert not bad, bad
    assert not CANARY.exists(), "a payload ran"


# ---- a valid program using every feature (bank, embeddings, refine, vote, shuffle) -----------------------
def base_doc() -> dict[str, Any]:
    bank = Bank([Exemplar(q, "Because the findings fit.") for q in train_set()[:3]], {"kind": "wordllama"},
                np.arange(12, dtype=np.float32).reshape(3, 4))
    demos = Retrieve(k=2, strategy="random", bank=bank, bank_name="bank", tune=False)
    root = Vote(Shuffle(SelfCoT(demos=demos, tune=False), n=2, tune=False),
                Refine(Predict(tune=False), m=2, r=1, tune=False))
    return Program(root, name="victim", lm={"model": "echo", "mode": "text"},
                   compile_info={"dev": {"score": 0.5}}).to_dict()


QUESTION = Question("x1", "Which {{options}} drug {0.__class__} treats {% import os %} this?",
                    {"A": "aspirin {{question}}", "B": "heparin {0.__globals__}", "C": "insulin"}, answer="A")


def prompts_of(program: Program, q: Question = QUESTION) -> list[str]:
    lm = EchoLM()
    program.run(q, lm)
    return [r.prompt or "" for r in lm.requests]


@pytest.fixture(autouse=True, scope="module")
def warmed() -> None:
    """Do every lazy import once, outside the tripwires (loading and running a valid program)."""
    p = loads(json.dumps(base_doc()))
    prompts_of(p)
    p.to_json()
    with pytest.raises(ProgramFileError):
        loads("{")
    import tempfile

    from medcompile.cli.main import main

    with tempfile.TemporaryDirectory() as d, contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        p.save(str(Path(d) / "ok.json"))
        (Path(d) / "bad.json").write_text("{", encoding="utf-8")
        assert main(["validate", str(Path(d) / "ok.json")]) == 0
        assert main(["validate", str(Path(d) / "bad.json")]) == 2
    CANARY.unlink(missing_ok=True)


def with_(doc: dict[str, Any], *edits: tuple[tuple[Any, ...], Any]) -> str:
    d = copy.deepcopy(doc)
    for path, value in edits:
        node = d
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
    return json.dumps(d)


# ---- module types that name code -------------------------------------------------------------------------
CODE_NAMES = ["os.system", "__import__", "subprocess.Popen", "builtins.eval", "eval", "exec", "pickle.loads",
              "medcompile.cli.resolve.resolve_program", "programs.medprompt", "Module", "__class__", "__init__",
              "object", "type", "Predict.__init__.__globals__", "Ｐredict", "predict", "Vote\n", PY]
MODULE_PATHS = [("graph",), ("graph", "members", 0), ("graph", "members", 0, "inner"),
                ("graph", "members", 0, "inner", "demos"), ("graph", "members", 1, "inner")]


@pytest.mark.parametrize("name", CODE_NAMES)
def test_module_types_naming_code_are_refused(name: str) -> None:
    doc = base_doc()
    texts = [with_(doc, ((*p, "type"), name)) for p in MODULE_PATHS]
    with tripwires():
        for text in texts:
            with pytest.raises(ProgramFileError) as ei:
                loads(text)
            assert "type" in str(ei.value) or "tag" in str(ei.value)
        # the registry lookup behind the schema, on its own: a plain dict of six classes
        for name_ in (name, "__class__", "__dict__", "mro"):
            with pytest.raises(ModuleError, match="unknown module type"):
                Resolver({}).build({"type": name_, "k": 1})


# ---- templates and text ------------------------------------------------------------------------------------
JINJA = ["{{ ''.__class__.__mro__ }}", "{{ ''.__class__.__mro__[1].__subclasses__() }}", "{% import os %}",
         "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}", "{{ self.__init__.__globals__ }}",
         "{{ question.__class__ }}", "{{ question|attr('__class__') }}", "{{ config }}", "{{ lipsum.__globals__.os }}",
         "{{question}}{{ request.application.__globals__.__builtins__.__import__('os').popen('id') }}",
         "{{ cycler.__init__.__globals__.os.popen('" + SHELL + "').read() }}", "{%raw%}{{7*7}}{%endraw%}",
         "{{7*7}}", "{{ question[0] }}", "{{ question.upper() }}", "{{question!r}}", "{{question:>10}}",
         "{# comment #}{% if 1 %}x{% endif %}", "{{}", "{{ }}", "{{\u0071uestion.__class__}}"]
INERT = ["{0.__globals__}", "{question.__class__.__mro__}", "{0.__init__.__globals__[os].system}", "%(question)s",
         "${question}", "#{question}", "<%= question %>", "{!r}", "{}", "{ {question} }", "__import__('os')",
         PY]


@pytest.mark.parametrize("payload", JINJA)
def test_template_syntax_beyond_plain_placeholders_is_refused(payload: str) -> None:
    doc = base_doc()
    texts = [with_(doc, (("templates", t), payload + " {{answer}}" if t == "answer_line" else payload))
             for t in ("question_block", "answer_line", "reasoning_prefix", "refine_path", "chat_format_hint")]
    with tripwires():
        for text in texts:
            with pytest.raises(ProgramFileError, match="templates"):
                loads(text)


@pytest.mark.parametrize("payload", INERT)
def test_other_brace_syntax_loads_as_inert_text(payload: str) -> None:
    """Python format fields and other template languages are just characters: they
    reach the model exactly as written, next to the real question."""
    doc = base_doc()
    text = with_(doc, (("templates", "reasoning_prefix"), f"Reasoning {payload}: step by step."),
                 (("templates", "answer_prefix"), f"Answer {payload}:"),
                 (("signature", "instruction"), f"Be careful {payload} {{{{question}}}}."),
                 (("graph", "members", 1, "inner", "signature", "instruction"), f"Refine {payload}"))
    with tripwires():
        program = loads(text)
        prompts = prompts_of(program)
    assert prompts, "the program made no call"
    literal = payload
    joined = "\n".join(prompts)
    assert f"Answer {literal}:" in joined and f"Refine {literal}" in joined
    for leak in ("<class", "<function", "<module", "__builtins__", "posix", "<built-in"):
        assert leak not in joined.replace(literal, "")


def test_question_and_exemplar_text_is_substituted_once_never_re_rendered() -> None:
    doc = base_doc()
    for item in doc["banks"]["bank"]["items"]:
        item["rationale"] = "{{question}} {% import os %} {0.__globals__}"
    with tripwires():
        program = loads(json.dumps(doc))
        prompts = prompts_of(program)
    joined = "\n".join(prompts)
    assert "Which {{options}} drug {0.__class__} treats {% import os %} this?" in joined
    assert "A. aspirin {{question}}" in joined and "B. heparin {0.__globals__}" in joined
    assert "{{question}} {% import os %} {0.__globals__}" in joined


# ---- hidden pickles and deserialisation gadgets -----------------------------------------------------------------
def test_pickles_in_the_embeddings_are_never_unpickled() -> None:
    doc = base_doc()
    blob = pickle.dumps(Evil())
    b64 = base64.b64encode(blob).decode()
    variants = [
        b64,  # a bare pickle
        f"f32le:{hashlib.sha256(blob).hexdigest()}:{b64}",  # the right codec, a size that fits no matrix
        "npy:" + base64.b64encode(b"\x93NUMPY" + blob).decode(),  # a numpy file with an object array
        f"pickle:{b64}",
    ]
    texts = [with_(doc, (("banks", "bank", "embeddings", "data"), v)) for v in variants]
    # a pickle padded to exactly fill the 3 x dim float32 matrix, with matching checksums: it loads, as floats
    dim = -(-len(blob) // 12)
    padded = blob + b"\0" * (12 * dim - len(blob))
    digest = hashlib.sha256(padded).hexdigest()
    fitted = with_(doc, (("banks", "bank", "embeddings", "data"),
                         f"f32le:{digest}:{base64.b64encode(padded).decode()}"),
                   (("banks", "bank", "embeddings", "shape"), [3, dim]),
                   (("banks", "bank", "embeddings", "sha256"), digest))
    with tripwires():
        for text in texts:
            with pytest.raises(ProgramFileError, match="decode_matrix|embeddings"):
                loads(text)
        program = loads(fitted)
    emb = program.banks()["bank"].embeddings()
    assert emb.dtype == np.float32 and emb.shape == (3, dim) and emb.tobytes() == padded


GADGETS = {
    "__reduce__": ["os.system", [SHELL]],
    "py/object": "os.system", "py/reduce": [{"py/function": "os.system"}, {"py/tuple": [SHELL]}],
    "!!python/object/apply:os.system": [SHELL],
    "$type": "System.Diagnostics.Process, System", "@class": "java.lang.Runtime",
    "__class__": {"__module__": "os", "__name__": "system"},
    "pickle": base64.b64encode(pickle.dumps(Evil())).decode(),
    "marshal": base64.b64encode(marshal.dumps(compile(PY, "<x>", "exec"))).decode(),
    "code": PY, "lambda": "lambda: __import__('os').system('" + SHELL + "')",
}


def test_gadgets_in_free_form_sections_stay_plain_data() -> None:
    doc = base_doc()
    doc["compile"] = {**doc["compile"], **GADGETS, "nested": {"deeper": GADGETS}}
    doc["lm"] = {"model": "echo", "mode": "text", "spec": "gguf:/etc/passwd", **GADGETS}
    with_embedder = copy.deepcopy(doc)
    with_embedder["banks"]["bank"]["embedder"] = {"kind": "wordllama", **GADGETS}
    with tripwires():
        program = loads(json.dumps(doc))
        again = program.to_json()  # written back as the same plain data
        prompts = prompts_of(program, QUESTION)  # run with a model we pass: the file's lm is not used
        try:  # embedder settings are open-ended too: refused or kept as data, never acted on
            loads(json.dumps(with_embedder)).to_json()
        except ProgramFileError:
            pass
    assert program.compile_info["py/object"] == "os.system" and program.compile_info["nested"]["deeper"] == GADGETS
    assert json.loads(again)["compile"]["__reduce__"] == ["os.system", [SHELL]]
    assert prompts


def test_whole_file_payloads_are_not_json_and_never_run(tmp_path: Path) -> None:
    files = {
        "python.json": f"import os\nos.system('{SHELL}')\n",
        "expr.json": PY,
        "pickle.json": pickle.dumps(Evil()),
        "yaml.json": f"!!python/object/apply:os.system ['{SHELL}']\n",
        "jsonc.json": "{/* */ \"schema\": \"medcompile.program\"}",
        "json5.json": "{schema: 'medcompile.program', schema_version: 1,}",
        "dupkeys.json": with_(base_doc(), (("graph", "type"), "Vote")).replace('"type": "Vote"',
                                                                              '"type": "Vote", "type": "os.system"', 1),
    }
    paths = []
    for name, body in files.items():
        p = tmp_path / name
        p.write_bytes(body if isinstance(body, bytes) else body.encode())
        paths.append(p)
    with tripwires():
        for p in paths:
            with pytest.raises(ProgramFileError):
                load(p)


# ---- the CLI: .py programs -------------------------------------------------------------------------------------
def _evil_py(tmp_path: Path) -> Path:
    p = tmp_path / "evil.py"
    p.write_text(f"import os\nos.system({SHELL!r})\n\ndef build(signature=None):\n    raise SystemExit(0)\n",
                 encoding="utf-8")
    return p


def test_serve_refuses_py_programs_without_importing_them(tmp_path: Path) -> None:
    serve = pytest.importorskip("medcompile.cli.commands.serve")
    evil = _evil_py(tmp_path)
    also = tmp_path / "evil.JSON.py"
    also.write_bytes(evil.read_bytes())
    with tripwires():
        for p in (evil, also):
            with pytest.raises(ProgramFileError, match="serve only loads compiled program .json files"):
                serve.load_programs([str(p)])
    # and as real commands: exit code 2, one line, nothing ran, no port opened
    exe = Path(sys.executable).with_name("medcompile")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "medcompile.cli.main"]
    runs = [subprocess.Popen(cmd + argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, cwd=tmp_path)
            for argv in (["serve", str(evil), "--port", "0"], ["run", str(evil), "--input", "-", "--output", "-"],
                         ["validate", str(evil)])]
    errs = []
    for proc in runs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 2, (proc.args, err)
        assert "Traceback" not in err and "error" in err
        assert "medcompile serve:" not in out  # never started
        errs.append(err)
    assert "serve only loads compiled program .json files" in errs[0]
    assert "not valid JSON" in errs[1] and "not valid JSON" in errs[2]
    assert not CANARY.exists()


def test_run_and_validate_read_py_as_json_data(tmp_path: Path) -> None:
    evil = _evil_py(tmp_path)
    from medcompile.cli.main import main

    err = io.StringIO()
    with tripwires(), contextlib.redirect_stderr(err):
        rc_validate = main(["validate", str(evil)])
    assert rc_validate == 2 and "not valid JSON" in err.getvalue()


def test_the_tripwires_do_fire() -> None:
    """The harness above can fail: running code, unpickling or importing a new module trips it."""
    with pytest.raises(AssertionError, match="eval called"):
        with tripwires():
            eval("1 + 1")  # noqa: S307
    with pytest.raises(AssertionError, match="loads called"):
        with tripwires():
            pickle.loads(pickle.dumps(1))
    sys.modules.pop("colorsys", None)
    with pytest.raises(AssertionError, match="modules imported|marshal.loads called"):  # .pyc loads via marshal
        with tripwires():
            import colorsys  # noqa: F401
    with pytest.raises(AssertionError, match="payload ran"):
        with tripwires():
            CANARY.touch()
    CANARY.unlink(missing_ok=True)
