import pytest

from medcompile.prompts.templates import DEFAULT_TEMPLATES, TemplateError, check_templates, validate_template


@pytest.mark.parametrize("evil", [
    "{{ question.__class__ }}", "{{ question|attr('x') }}", "{% import os %}", "{{ ''.join([]) }}",
    "{{ config }}", "{question.__class__.__mro__}}}",
])
def test_code_like_templates_are_rejected(evil):
    with pytest.raises(TemplateError):
        validate_template(evil, {"question"})


def test_values_are_rendered_inert():
    ts = check_templates(DEFAULT_TEMPLATES)
    out = ts["answer_line"].render({"answer": "{{ __import__('os').system('echo hi') }}"})
    assert out == "Answer: {{ __import__('os').system('echo hi') }}"  # pasted as text, never evaluated


def test_template_set_must_be_complete():
    t = dict(DEFAULT_TEMPLATES)
    t.pop("answer_line")
    with pytest.raises(TemplateError, match="missing"):
        check_templates(t)
