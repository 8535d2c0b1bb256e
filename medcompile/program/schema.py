"""The compiled-program file format, version 2: a public contract.

These pydantic models *are* the schema: they validate every file before anything is
built from it, and `program.schema.json` (shipped in the package) is generated from
them. Unknown fields are errors, every size is bounded, and nothing in a file can
name code to run. Any change to this file that alters what a valid file looks like
needs a new SCHEMA_VERSION and a migration (`upgrade`).

Version 2 (from 1): every Predict/SelfCoT records how it answers, `answer`
("constrained": the model chooses among the option keys, scored where the backend
can; "parse": the key is read from free text) and `followup` (a reasoning reply
without a key gets one constrained follow-up call). Version-1 files load as
`answer: "parse", followup: false`, which is exactly how they ran.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SCHEMA_ID = "medcompile.program"
SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)  # older versions are upgraded on load
MAX_TEXT = 200_000  # characters in one text field
MAX_ITEMS = 1_000_000  # exemplars in one bank
MAX_DEPTH = 24  # module nesting


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


Text = Annotated[str, Field(max_length=MAX_TEXT)]
Key = Annotated[str, Field(min_length=1, max_length=64)]


class FieldSpec(_Strict):
    name: Literal["question", "options", "context", "answer", "rationale", "reasoning"]
    type: Literal["text", "options", "choice", "rationale"]
    desc: Text = ""


class SignatureSpec(_Strict):
    inputs: list[FieldSpec] = Field(min_length=2, max_length=3)
    outputs: list[FieldSpec] = Field(min_length=1, max_length=2)
    instruction: Text


TuneValue = Union[bool, int, float, Text]
Tune = Annotated[dict[str, Annotated[list[TuneValue], Field(min_length=1, max_length=64)]], Field(max_length=16)]


class RetrieveSpec(_Strict):
    type: Literal["Retrieve"]
    k: int = Field(ge=0, le=64)
    strategy: Literal["knn", "random"]
    seed: int = Field(ge=0, le=2**31 - 1)
    bank: Key | None
    tune: Tune | None = None


class PredictSpec(_Strict):
    type: Literal["Predict", "SelfCoT"]
    signature: SignatureSpec
    cot: bool
    temperature: float = Field(ge=0.0, le=2.0)
    max_tokens: int | None = Field(ge=1, le=32768)
    demos: RetrieveSpec | None
    tune: Tune | None = None
    answer: Literal["constrained", "parse"]
    followup: bool


class ShuffleSpec(_Strict):
    type: Literal["Shuffle"]
    n: int = Field(ge=1, le=64)
    seed: int = Field(ge=0, le=2**31 - 1)
    inner: "ModuleSpec"
    tune: Tune | None = None


class VoteSpec(_Strict):
    type: Literal["Vote"]
    members: list["ModuleSpec"] = Field(min_length=1, max_length=64)


class RefineSpec(_Strict):
    type: Literal["Refine"]
    m: int = Field(ge=1, le=32)
    r: int = Field(ge=1, le=32)
    temperature: float = Field(ge=0.0, le=2.0)
    inner: PredictSpec
    tune: Tune | None = None


class RouteSpec(_Strict):
    """Medprompt+ portfolio: members cheapest first; stop at member i when its confidence reaches
    thresholds[i] ("skip": never run it); expected_calls = mean calls per question measured on dev;
    pool: each step's answer is the vote over all members' answers so far."""

    type: Literal["Route"]
    members: list["ModuleSpec"] = Field(min_length=2, max_length=8)
    thresholds: list[Union[Annotated[float, Field(ge=0.0, le=1.0)], Literal["skip"]]] = Field(min_length=1,
                                                                                              max_length=7)
    expected_calls: Annotated[float, Field(ge=0.0, le=1e6)] | None
    pool: bool
    tune: Tune | None = None

    @model_validator(mode="after")
    def _one_threshold_per_member_but_the_last(self) -> "RouteSpec":
        if len(self.thresholds) != len(self.members) - 1:
            raise ValueError(f"thresholds needs one value per member but the last ({len(self.members) - 1}), "
                             f"got {len(self.thresholds)}")
        return self


ModuleSpec = Annotated[Union[PredictSpec, RetrieveSpec, ShuffleSpec, VoteSpec, RefineSpec, RouteSpec],
                       Field(discriminator="type")]


class ExemplarSpec(_Strict):
    id: Annotated[str, Field(max_length=256)]
    question: Text
    options: dict[Key, Text] = Field(min_length=2, max_length=26)
    answer: Key
    context: Text | None = None
    subject: Annotated[str, Field(max_length=256)] | None = None
    meta: dict[Key, Annotated[str, Field(max_length=1024)]] | None = None
    rationale: Text | None = None

    @field_validator("answer")
    @classmethod
    def _answer_is_option(cls, v: str, info: Any) -> str:
        opts = info.data.get("options")
        if opts is not None and v not in opts:
            raise ValueError(f"answer {v!r} is not one of the options {list(opts)}")
        return v


class EmbeddingsSpec(_Strict):
    encoding: Literal["base64-f32le"]
    shape: list[int] = Field(min_length=2, max_length=2)
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    data: str


class IndexSpec(_Strict):
    """The approximate kNN index of a large bank, with recall@5 against exact search measured
    when it was built (on `recall_sample` bank rows, and as many midpoints of two bank rows).
    Absent: exact (flat) search."""

    kind: Literal["ivf", "hnsw"]
    n: int = Field(ge=0, le=MAX_ITEMS)
    dim: int = Field(ge=1, le=1 << 16)
    nlist: int | None = Field(default=None, ge=1, le=1 << 20)
    nprobe: int | None = Field(default=None, ge=1, le=1 << 20)
    codes: Literal["f32", "fp16", "pq4"] | None = None  # IVF list storage; absent: f32 (older files)
    hnsw_m: int | None = Field(default=None, ge=2, le=512)
    ef_construction: int | None = Field(default=None, ge=1, le=1 << 16)
    ef_search: int | None = Field(default=None, ge=1, le=1 << 16)
    recall_at_5: float | None = Field(default=None, ge=0.0, le=1.0)
    recall_sample: int | None = Field(default=None, ge=0, le=MAX_ITEMS)
    recall_at_5_midpoints: float | None = Field(default=None, ge=0.0, le=1.0)  # on row-pair midpoints


class EmbedderSpec(BaseModel):
    """Embedder settings are open-ended per kind, but only plain JSON values."""

    model_config = ConfigDict(extra="allow", frozen=True)
    kind: Literal["wordllama", "sentence-transformers", "litellm"]

    @model_validator(mode="after")
    def _no_connection_settings(self) -> "EmbedderSpec":
        bad = sorted(set(self.model_extra or {}) & {"api_base", "api_key_env", "allow_download"})
        if bad:
            raise ValueError(f"connection settings {bad} are not accepted from a program file; "
                             "set them where the program runs (environment / command line)")
        return self


class BankSpec(_Strict):
    items: list[ExemplarSpec] = Field(max_length=MAX_ITEMS)
    embedder: EmbedderSpec | None
    embeddings: EmbeddingsSpec | None = None
    index: IndexSpec | None = None  # large banks: the approximate kNN index and its measured recall


class LMSpec(BaseModel):
    """The model a program was compiled for (never any secret)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    model: Annotated[str, Field(min_length=1, max_length=512)]
    mode: Literal["text", "chat"]


class ProgramSpec(_Strict):
    schema_: Literal["medcompile.program"] = Field(alias="schema")
    schema_version: Literal[2]
    name: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.\-]+$")]
    signature: SignatureSpec
    templates: dict[Key, Text]
    graph: ModuleSpec
    banks: dict[Key, BankSpec] = Field(max_length=64)
    lm: LMSpec | None = None
    seed: int = Field(ge=0, le=2**31 - 1)
    compile: dict[str, Any] | None = None


ShuffleSpec.model_rebuild()
VoteSpec.model_rebuild()
RouteSpec.model_rebuild()
ProgramSpec.model_rebuild()


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the program file, as shipped in program.schema.json."""
    schema = ProgramSpec.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://medcompile.dev/schema/program-v{SCHEMA_VERSION}.json"
    schema["title"] = f"medcompile compiled program (schema_version {SCHEMA_VERSION})"
    return schema


_PREDICTORS = ("Predict", "SelfCoT")


def upgrade(raw: Any) -> Any:
    """A version-1 program dict as the equivalent version-2 dict (a new object; anything
    else is returned as is, for validation to judge). Predictors answered by parsing
    free text in version 1, with no follow-up call, so that is what they record."""
    if not isinstance(raw, dict) or raw.get("schema_version") != 1 or type(raw.get("schema_version")) is not int:
        return raw

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(x) for x in node]
        if not isinstance(node, dict):
            return node
        out = {k: walk(v) if k in ("inner", "members", "demos") else v for k, v in node.items()}
        if out.get("type") in _PREDICTORS:
            for k in ("answer", "followup"):
                if k in out:  # not a field of version 1: leave it for validation to refuse
                    out[f"{k} (not in schema_version 1)"] = out.pop(k)
            out.setdefault("answer", "parse")
            out.setdefault("followup", False)
        return out

    return {**raw, "schema_version": 2, "graph": walk(raw.get("graph"))}
