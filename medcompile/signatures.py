"""Signatures: what a module reads, what it writes, and the instruction it follows.

A signature is plain data (it lives in the compiled JSON), so it can be written in
three ways that all end up the same: the DSPy shorthand ``"question, options -> answer"``,
explicit `Field`s, or an existing ``dspy.Signature`` class.

What each part does: the inputs decide what a prompt shows (a question's context
passage appears only when ``context`` is an input; the server requires it then and
refuses it otherwise); the instruction heads every prompt and is what the compiler
tunes. The outputs are fixed by the task: the answer is always one option key of the
question. A ``reasoning``/``rationale`` output is accepted, so DSPy chain-of-thought
signatures import unchanged, but it does not make a module reason: that is the
module's own choice (`Predict.cot`, tuned by the compiler).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

FieldType = Literal["text", "options", "choice", "rationale"]

#: Input fields a signature may name: each maps to an attribute of `Question`.
INPUT_FIELDS: dict[str, FieldType] = {"question": "text", "options": "options", "context": "text"}
#: Output fields: the answer is always one option key of *this* question.
OUTPUT_FIELDS: dict[str, FieldType] = {"answer": "choice", "rationale": "rationale", "reasoning": "rationale"}
_TYPE_ALIASES: dict[str, FieldType] = {
    "str": "text", "text": "text", "options": "options", "dict": "options", "dict[str, str]": "options",
    "choice": "choice", "literal": "choice", "rationale": "rationale",
}

DEFAULT_INSTRUCTION = (
    "Answer the following multiple-choice question about medicine. "
    "Choose the single best option."
)


class SignatureError(ValueError):
    """A signature cannot be understood (unknown field, missing answer, bad shorthand)."""


@dataclass(frozen=True)
class Field:
    name: str
    type: FieldType
    desc: str = ""

    def to_dict(self) -> dict[str, str]:
        d = {"name": self.name, "type": self.type}
        if self.desc:
            d["desc"] = self.desc
        return d


@dataclass(frozen=True)
class Signature:
    """Typed inputs and outputs plus an instruction.

    Inputs are drawn from ``question``, ``options`` and ``context`` (shown only when
    declared); outputs must include ``answer`` (a `choice`: one key of the question's
    own options) and may name a rationale (see the module docstring).
    """

    inputs: tuple[Field, ...]
    outputs: tuple[Field, ...]
    instruction: str = DEFAULT_INSTRUCTION

    def __post_init__(self) -> None:
        names = [f.name for f in self.inputs]
        for f in self.inputs:
            if f.name not in INPUT_FIELDS:
                raise SignatureError(
                    f"unknown input field {f.name!r}; inputs are drawn from {sorted(INPUT_FIELDS)}"
                )
        if "question" not in names or "options" not in names:
            raise SignatureError("a multiple-choice signature needs the inputs 'question' and 'options'")
        outs = [f.name for f in self.outputs]
        for f in self.outputs:
            if f.name not in OUTPUT_FIELDS:
                raise SignatureError(
                    f"unknown output field {f.name!r}; outputs are drawn from {sorted(OUTPUT_FIELDS)}"
                )
        if "answer" not in outs:
            raise SignatureError("a signature needs the output 'answer'")
        if len(set(names)) != len(names) or len(set(outs)) != len(outs):
            raise SignatureError("a signature names a field twice")

    # ---- construction -------------------------------------------------------------
    @classmethod
    def parse(cls, spec: str, instruction: str | None = None) -> "Signature":
        """Parse the DSPy shorthand, e.g. ``"question, options -> answer"``.

        Types may be given as ``name: type``; known names get their natural type.
        """
        if not isinstance(spec, str) or spec.count("->") != 1:
            raise SignatureError(f"signature shorthand must look like 'question, options -> answer', got {spec!r}")
        left, right = spec.split("->")
        return cls(
            inputs=tuple(_parse_fields(left, INPUT_FIELDS, spec)),
            outputs=tuple(_parse_fields(right, OUTPUT_FIELDS, spec)),
            instruction=instruction if instruction is not None else DEFAULT_INSTRUCTION,
        )

    @classmethod
    def from_dspy(cls, dspy_signature: Any) -> "Signature":
        """Accept a ``dspy.Signature`` class (or anything with input/output_fields)."""
        try:
            ins = list(dspy_signature.input_fields)
            outs = list(dspy_signature.output_fields)
        except AttributeError as exc:
            raise SignatureError(f"{dspy_signature!r} is not a dspy.Signature") from exc
        instruction = getattr(dspy_signature, "instructions", None) or DEFAULT_INSTRUCTION
        return cls.parse(f"{', '.join(ins)} -> {', '.join(outs)}", instruction=instruction)

    @classmethod
    def coerce(cls, value: "Signature | str | Any | None") -> "Signature":
        """Whatever a user passed, make it a Signature (None gives the MCQ default)."""
        if value is None:
            return MCQ
        if isinstance(value, Signature):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        return cls.from_dspy(value)

    def with_instruction(self, instruction: str) -> "Signature":
        return Signature(self.inputs, self.outputs, instruction)

    # ---- inspection -----------------------------------------------------------------
    @property
    def input_names(self) -> list[str]:
        return [f.name for f in self.inputs]

    def shorthand(self) -> str:
        return f"{', '.join(f.name for f in self.inputs)} -> {', '.join(f.name for f in self.outputs)}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": [f.to_dict() for f in self.inputs],
            "outputs": [f.to_dict() for f in self.outputs],
            "instruction": self.instruction,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Signature":
        return cls(
            inputs=tuple(Field(f["name"], f["type"], f.get("desc", "")) for f in d["inputs"]),
            outputs=tuple(Field(f["name"], f["type"], f.get("desc", "")) for f in d["outputs"]),
            instruction=d["instruction"],
        )


_NAME = re.compile(r"^\s*([A-Za-z_]\w*)\s*(?::\s*(.+?))?\s*$")


def _split_top_level(part: str) -> list[str]:
    """Split on commas outside brackets, so ``dict[str, str]`` stays one type."""
    out, depth, cur = [], 0, ""
    for ch in part:
        depth += ch in "[("
        depth -= ch in "])"
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return out


def _parse_fields(part: str, known: dict[str, FieldType], spec: str) -> list[Field]:
    fields: list[Field] = []
    for raw in _split_top_level(part):
        if not raw.strip():
            raise SignatureError(f"empty field name in signature {spec!r}")
        m = _NAME.match(raw)
        if not m:
            raise SignatureError(f"cannot read field {raw.strip()!r} in signature {spec!r}")
        name, typ = m.group(1), m.group(2)
        if name not in known:
            raise SignatureError(f"unknown field {name!r} in signature {spec!r}; allowed here: {sorted(known)}")
        ftype = known[name]
        if typ is not None:
            alias = _TYPE_ALIASES.get(typ.strip().lower())
            if alias is None and not typ.lower().startswith("literal"):
                raise SignatureError(f"unknown type {typ!r} for field {name!r} in {spec!r}")
            if alias is not None and alias != ftype and not (ftype == "rationale" and alias == "text"):
                raise SignatureError(f"field {name!r} must be of type {ftype!r}, not {typ!r}")
        fields.append(Field(name, ftype))
    return fields


#: The default signature for multiple-choice QA.
MCQ = Signature.parse("question, options -> answer")
#: The default with a context passage (PubMedQA).
MCQ_WITH_CONTEXT = Signature.parse("context, question, options -> answer")
