from medcompile.prompts.parse import parse_answer

OPTS = {"A": "aspirin", "B": "heparin", "C": "warfarin", "D": "none of these"}
YNM = {"yes": "yes", "no": "no", "maybe": "maybe"}


def test_direct_key_variants():
    for text in (" B", "B", "(B)", " B. heparin", "\nB", "**B**"):
        assert parse_answer(text, OPTS, direct=True).key == "B", text


def test_statement_first_wins_over_continuations():
    p = parse_answer("Because of X.\nAnswer: C\n\nQuestion: ...\nAnswer: A", OPTS, direct=False)
    assert p.key == "C" and p.rationale == "Because of X."


def test_answer_on_next_line_after_prefix():
    assert parse_answer("\n\nAnswer:\n\nA. aspirin\n\nAnswer: B", OPTS, direct=True).key == "A"


def test_article_a_is_not_option_a():
    assert parse_answer("a patient with a cough", OPTS, direct=False).key is None


def test_option_text_alone():
    assert parse_answer("I would give warfarin here.", OPTS, direct=False).key == "C"


def test_abstentions_never_raise():
    for text in ("", "   ", "\x00\x00", "Answer: Z", "blah " * 1000, "\udcff\udcfe", "Answer: E"):
        p = parse_answer(text, OPTS, direct=False)
        assert p.key is None and p.reason


def test_word_keys():
    assert parse_answer(" Yes, it does", YNM, direct=True).key == "yes"
    assert parse_answer("so... the answer is maybe.", YNM, direct=False).key == "maybe"


def test_explanation_after_the_answer_becomes_the_rationale():
    p = parse_answer("\n\nAnswer: B. heparin\nExplanation: It is an anticoagulant given IV.\n\nQuestion: x",
                     OPTS, direct=False)
    assert p.key == "B" and p.rationale == "It is an anticoagulant given IV."
    assert parse_answer("Answer: C", OPTS, direct=False).rationale == ""
