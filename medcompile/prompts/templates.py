"""Prompt templates that cannot run code.

Templates travel inside compiled JSON written by other teams, so rendering must be
inert: the only syntax is ``{{name}}`` for a known variable. There is no attribute
access, indexing, filters, format specs or expression evaluation, so a template such
as ``{{ x.__class__ }}`` or ``{% import os %}`` is rejected when the program loads.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_SUSPICIOUS = re.compile(r"\{\{|\}\}|\{%|%\}")


class TemplateError(ValueError):
    """A template uses syntax or variables that are not allowed."""


@dataclass(frozen=True)
class Template:
    """A text with ``{{name}}`` placeholders drawn from a fixed set of variables."""

    text: str
    allowed: frozenset[str]

    def __post_init__(self) -> None:
        validate_template(self.text, self.allowed)

    def render(self, values: Mapping[str, str]) -> str:
        def sub(m: re.Match[str]) -> str:
            return str(values.get(m.group(1), ""))

        return _PLACEHOLDER.sub(sub, self.text)


def validate_template(text: str, allowed: frozenset[str] | set[str], where: str = "template") -> None:
    """Reject anything but ``{{known_name}}`` placeholders."""
    if not isinstance(text, str):
        raise TemplateError(f"{where}: must be a string")
    names = _PLACEHOLDER.findall(text)
    unknown = sorted(set(names) - set(allowed))
    if unknown:
        raise TemplateError(f"{where}: unknown variable(s) {unknown}; allowed: {sorted(allowed)}")
    leftover = _SUSPICIOUS.search(_PLACEHOLDER.sub("", text))
    if leftover:
        raise TemplateError(
            f"{where}: only '{{{{name}}}}' placeholders are allowed; found {leftover.group(0)!r} "
            "(templates are never evaluated as code)"
        )


#: The variables each template may use, and the default texts. These defaults are
#: copied into every compiled program, so a later library version changing them
#: never changes what an existing program sends.
TEMPLATE_VARIABLES: dict[str, frozenset[str]] = {
    "question_block": frozenset({"context", "question", "options"}),
    "context_line": frozenset({"context"}),
    "option_line": frozenset({"key", "text"}),
    "answer_line": frozenset({"answer"}),
    "reasoning_line": frozenset({"rationale"}),
    "reasoning_prefix": frozenset(),
    "answer_prefix": frozenset(),
    "chat_format_hint": frozenset({"keys"}),
    "refine_intro": frozenset(),
    "refine_path": frozenset({"index", "rationale", "answer"}),
    "refine_instruction": frozenset(),
}

DEFAULT_TEMPLATES: dict[str, str] = {
    "question_block": "{{context}}Question: {{question}}\nOptions:\n{{options}}",
    "context_line": "Context: {{context}}\n",
    "option_line": "{{key}}. {{text}}",
    "answer_line": "Answer: {{answer}}",
    "reasoning_line": "Reasoning: {{rationale}}",
    "reasoning_prefix": "Reasoning: Let's think step by step.",
    "answer_prefix": "Answer:",
    "chat_format_hint": "Think step by step if asked to reason, then end with a line 'Answer: X' where X is one of {{keys}}.",
    "refine_intro": "Here are several independent attempts at this question:",
    "refine_path": "Attempt {{index}}: {{rationale}} (answer {{answer}})",
    "refine_instruction": "Considering these attempts, reason carefully and give the best answer.",
}


def check_templates(templates: Mapping[str, str]) -> dict[str, Template]:
    """Validate a full template set (as loaded from JSON) and compile it."""
    missing = sorted(set(TEMPLATE_VARIABLES) - set(templates))
    if missing:
        raise TemplateError(f"templates: missing {missing}")
    extra = sorted(set(templates) - set(TEMPLATE_VARIABLES))
    if extra:
        raise TemplateError(f"templates: unknown template(s) {extra}")
    out = {}
    for name, text in templates.items():
        validate_template(text, TEMPLATE_VARIABLES[name], where=f"templates.{name}")
        out[name] = Template(text, TEMPLATE_VARIABLES[name])
    return out
