"""Flow bots on their own: checking a definition and the bot's answer to each message (no
server needed)."""

from __future__ import annotations

import copy
import time

import orjson
import pytest

from server.bots import flow as flows
from server.bots.flow import (
    BUILTIN_COMMANDS,
    DEFAULT_DONE,
    DEFAULT_FALLBACK,
    DEFAULT_HANDOFF_MESSAGE,
    MAX_COLLECT_ATTEMPTS,
    PERSON_PHRASES,
    Outcome,
    all_commands,
    respond,
    validate_commands,
    validate_flow,
)
from server.errors import InvalidInput

BUTTONS = {
    "content": "How can I help?",
    "content_type": "quick_button",
    "rich_media": {
        "buttons": [
            {"label": "Pricing", "value": "pricing"},
            {"label": "Newsletter", "value": "newsletter"},
        ]
    },
}

DEFINITION = {
    "greeting": ["Hi! I'm the shop's assistant.", BUTTONS],
    "intents": [
        {
            "name": "Pricing",
            "keywords": ["price", "how much does it cost"],
            "values": ["pricing"],
            "replies": ["Plans start at $10 a month."],
        },
        {
            "name": "newsletter",
            "keywords": ["newsletter", "subscribe"],
            "values": ["newsletter"],
            "replies": ["Happy to sign you up."],
            "collect": {
                "field": "email",
                "type": "email",
                "prompt": ["What's your email?"],
                "done": ["You're subscribed."],
            },
        },
        {"name": "refund", "patterns": [r"^refund\b", r"money\s+back"], "replies": ["Refunds!"]},
        {"name": "billing", "replies": ["Billing is monthly."]},
        {"name": "escalate", "keywords": ["complaint"], "replies": ["Sorry!"], "handoff": True},
    ],
    "fallback": ["I did not get that."],
    "handoff_after": 2,
    "handoff_message": ["A person will be with you shortly."],
    "moderation": {
        "keywords": ["idiot"],
        "patterns": [r"\bbuy\s+followers\b"],
        "reply": ["Please keep it friendly."],
    },
}

COMMANDS = [
    {"command": "/Billing", "description": "How billing works", "intent": "billing"},
    {"command": "/subscribe", "intent": "NEWSLETTER"},
]


@pytest.fixture
def flow() -> dict:
    return validate_flow(copy.deepcopy(DEFINITION))


@pytest.fixture
def commands(flow: dict) -> list[dict]:
    return validate_commands(copy.deepcopy(COMMANDS), flow)


def text(content: str) -> dict:
    return {"content": content, "content_type": "text", "rich_media": None}


def contents(outcome: Outcome) -> list[str]:
    return [r["content"] for r in outcome.replies]


def greeted(flow: dict, **state) -> dict:
    """A state after the greeting was sent."""
    return respond(flow, None, "hi").state | state


def invalid(data, fragment: str) -> str:
    with pytest.raises(InvalidInput) as caught:
        validate_flow(data)
    assert fragment in caught.value.message, caught.value.message
    return caught.value.message


# validate_flow


def test_a_definition_is_normalized_with_every_key():
    flow = validate_flow(copy.deepcopy(DEFINITION))
    assert flow["greeting"][0] == text("Hi! I'm the shop's assistant.")
    assert flow["greeting"][1]["content_type"] == "quick_button"
    assert flow["greeting"][1]["rich_media"]["buttons"][1] == {
        "label": "Newsletter",
        "value": "newsletter",
    }
    assert flow["intents"][0]["name"] == "pricing"
    assert flow["intents"][0]["collect"] is None
    assert flow["intents"][0]["handoff"] is False
    assert flow["intents"][0]["patterns"] == []
    assert flow["intents"][1]["collect"] == {
        "field": "email",
        "type": "email",
        "prompt": [text("What's your email?")],
        "invalid": [],
        "done": [text("You're subscribed.")],
    }
    assert flow["handoff_after"] == 2


def test_an_empty_definition_gets_the_defaults():
    assert validate_flow({}) == {
        "greeting": [],
        "intents": [],
        "fallback": [],
        "handoff_after": 3,
        "handoff_message": [],
        "moderation": {"keywords": [], "patterns": [], "reply": []},
    }


def test_a_normalized_flow_is_json_ready_and_validates_to_itself(flow):
    assert orjson.loads(orjson.dumps(flow)) == flow
    assert validate_flow(copy.deepcopy(flow)) == flow


def test_validate_flow_does_not_mutate_the_definition():
    data = copy.deepcopy(DEFINITION)
    validate_flow(data)
    assert data == DEFINITION


def test_keywords_are_lower_cased_and_their_whitespace_collapsed():
    flow = validate_flow({"intents": [{"name": "a", "keywords": ["  How   MUCH "]}]})
    assert flow["intents"][0]["keywords"] == ["how much"]


@pytest.mark.parametrize("data", [None, [], "flow", 3])
def test_a_flow_must_be_an_object(data):
    assert invalid(data, "flow: ") == "flow: Must be an object."


def test_an_unknown_key_is_refused_with_its_path():
    assert invalid({"greetings": []}, "") == "flow.greetings: Unknown field."
    message = invalid({"intents": [{"name": "a", "reply": []}]}, "")
    assert message == "flow.intents[0].reply: Unknown field."
    message = invalid({"intents": [{"name": "a", "collect": {"field": "x", "kind": "x"}}]}, "")
    assert message == "flow.intents[0].collect.kind: Unknown field."
    assert invalid({"moderation": {"words": []}}, "") == "flow.moderation.words: Unknown field."


def test_a_bad_regular_expression_is_refused_with_its_path():
    data = {"intents": [{"name": "a", "patterns": ["ok", "(unclosed"]}]}
    message = invalid(data, "flow.intents[0].patterns[1]: Not a valid regular expression")
    assert "missing )" in message
    invalid({"moderation": {"patterns": ["a{99999999999}"]}}, "flow.moderation.patterns[0]: ")


def test_a_long_pattern_is_refused():
    data = {"intents": [{"name": "a", "patterns": ["a" * 201]}]}
    assert invalid(data, "") == "flow.intents[0].patterns[0]: Longer than 200 characters."


def test_bad_rich_media_for_quick_buttons_names_the_path():
    data = {
        "intents": [
            {"name": "a", "keywords": ["a"]},
            {"name": "b", "keywords": ["b"]},
            {
                "name": "c",
                "keywords": ["c"],
                "replies": [{"content": "Pick", "content_type": "quick_button", "rich_media": {}}],
            },
        ]
    }
    message = invalid(data, "")
    assert (
        message == "flow.intents[2].replies[0].rich_media.buttons: Missing data for required field."
    )


def test_a_button_without_value_names_its_index():
    reply = {"content_type": "quick_button", "rich_media": {"buttons": [{"label": "A"}]}}
    message = invalid({"greeting": [reply]}, "")
    assert (
        message == "flow.greeting[0].rich_media.buttons[0].value: Missing data for required field."
    )


def test_a_reply_is_checked_like_a_message():
    assert invalid({"fallback": ["  "]}, "") == "flow.fallback[0]: A text message needs content."
    message = invalid({"fallback": [{"content": "x", "content_type": "video"}]}, "")
    assert message.startswith("flow.fallback[0].content_type: Must be one of: text, image")
    message = invalid({"fallback": [{"content": "x", "rich_media": {"a": 1}}]}, "")
    assert message == "flow.fallback[0].rich_media: Text messages carry no rich_media."
    assert invalid({"fallback": [3]}, "") == "flow.fallback[0]: Must be a string or an object."


def test_a_reply_may_not_carry_a_client_message_id():
    data = {"greeting": [{"content": "Hi", "client_message_id": "abc"}]}
    assert invalid(data, "") == "flow.greeting[0].client_message_id: Unknown field."


def test_a_duplicate_intent_name_is_refused_whatever_its_case():
    data = {"intents": [{"name": "pricing"}, {"name": "Pricing"}]}
    assert invalid(data, "") == "flow.intents[1].name: Duplicate intent name 'pricing'."


@pytest.mark.parametrize(
    ("intent", "expected"),
    [
        ({}, "flow.intents[0].name: Missing data for required field."),
        ({"name": "two words"}, "flow.intents[0].name: Must be 1 to 64"),
        ({"name": "a" * 65}, "flow.intents[0].name: Longer than 64 characters."),
        ({"name": 5}, "flow.intents[0].name: Not a valid string."),
        ({"name": "a", "keywords": "price"}, "flow.intents[0].keywords: Must be a list."),
        ({"name": "a", "keywords": [""]}, "flow.intents[0].keywords[0]: Must not be empty."),
        ({"name": "a", "keywords": ["k"] * 51}, "flow.intents[0].keywords: At most 50 items."),
        ({"name": "a", "values": ["v" * 501]}, "flow.intents[0].values[0]: Longer than 500"),
        ({"name": "a", "replies": ["r"] * 11}, "flow.intents[0].replies: At most 10 items."),
        ({"name": "a", "handoff": "yes"}, "flow.intents[0].handoff: Not a valid boolean."),
        ({"name": "a", "collect": {}}, "flow.intents[0].collect.field: Missing data"),
        ({"name": "a", "collect": {"field": "1x"}}, "flow.intents[0].collect.field: Must be a"),
        (
            {"name": "a", "collect": {"field": "x", "type": "date"}},
            "flow.intents[0].collect.type: Must be one of: text, email, phone, number.",
        ),
        (
            {"name": "a", "collect": {"field": "x"}, "handoff": True},
            "flow.intents[0].handoff: An intent that collects a field cannot also hand off.",
        ),
        (
            {"name": "a", "keywords": ["a\x00b"]},
            "flow.intents[0].keywords[0]: Must not contain NUL",
        ),
    ],
)
def test_a_bad_intent_is_refused_with_its_path(intent, expected):
    assert invalid({"intents": [intent]}, "").startswith(expected)


def test_too_many_intents_are_refused():
    data = {"intents": [{"name": f"i{n}"} for n in range(101)]}
    assert invalid(data, "") == "flow.intents: At most 100 items."


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (-1, "Must be between 0 and 20."),
        (21, "Must be between 0 and 20."),
        (True, "Not a valid integer."),
        (2.0, "Not a valid integer."),
        ("2", "Not a valid integer."),
    ],
)
def test_handoff_after_is_a_small_integer(value, expected):
    assert invalid({"handoff_after": value}, "") == f"flow.handoff_after: {expected}"


def test_an_intent_without_matchers_is_allowed_for_commands():
    flow = validate_flow({"intents": [{"name": "billing", "replies": ["Monthly."]}]})
    assert flow["intents"][0]["keywords"] == flow["intents"][0]["values"] == []


def test_a_field_name_in_an_error_is_not_echoed_when_unstorable():
    message = invalid({"bad\x00key": 1}, "")
    assert message == "flow: Field names must be valid Unicode without NUL characters."


# validate_commands and all_commands


def test_commands_are_normalized(flow):
    assert validate_commands(copy.deepcopy(COMMANDS), flow) == [
        {"command": "/billing", "description": "How billing works", "intent": "billing"},
        {"command": "/subscribe", "description": "", "intent": "newsletter"},
    ]
    assert validate_commands(None, flow) == []


def test_a_command_pointing_at_a_missing_intent_is_refused(flow):
    with pytest.raises(InvalidInput) as caught:
        validate_commands([COMMANDS[0], {"command": "/x", "intent": "nope"}], flow)
    assert caught.value.message == "commands[1].intent: No intent named 'nope' in the flow."


def test_a_flow_bot_command_needs_an_intent(flow):
    with pytest.raises(InvalidInput) as caught:
        validate_commands([{"command": "/x"}], flow)
    assert caught.value.message == "commands[0].intent: Missing data for required field."


@pytest.mark.parametrize("name", ["/help", "/AGENT"])
def test_a_command_may_not_clash_with_a_built_in_one(name):
    with pytest.raises(InvalidInput) as caught:
        validate_commands([{"command": "/ok"}, {"command": name}], None)
    assert caught.value.message == f"commands[1].command: {name.lower()} is a built-in command."


@pytest.mark.parametrize(
    ("commands", "expected"),
    [
        ("nope", "commands: Must be a list."),
        ([{"command": f"/c{n}"} for n in range(21)], "commands: At most 20 items."),
        (["/x"], "commands[0]: Must be an object."),
        ([{"description": "x"}], "commands[0].command: Missing data for required field."),
        ([{"command": "help"}], "commands[0].command: Must be '/' then a letter"),
        ([{"command": "/1st"}], "commands[0].command: Must be '/' then a letter"),
        ([{"command": "/" + "a" * 33}], "commands[0].command: Longer than 33 characters."),
        ([{"command": "/a"}, {"command": "/A"}], "commands[1].command: Duplicate command /a."),
        ([{"command": "/a", "description": "d" * 201}], "commands[0].description: Longer than"),
        ([{"command": "/a", "description": 5}], "commands[0].description: Not a valid string."),
        ([{"command": "/a", "hidden": True}], "commands[0].hidden: Unknown field."),
        (
            [{"command": "/a", "intent": "billing"}],
            "commands[0].intent: Only a flow bot's commands run an intent.",
        ),
    ],
)
def test_bad_webhook_bot_commands_are_refused_with_their_path(commands, expected):
    with pytest.raises(InvalidInput) as caught:
        validate_commands(commands, None)
    assert caught.value.message.startswith(expected), caught.value.message


def test_a_webhook_bot_command_has_no_intent():
    assert validate_commands([{"command": "/status", "description": " Order status "}], None) == [
        {"command": "/status", "description": "Order status", "intent": None}
    ]


def test_all_commands_lists_the_built_in_ones_first(commands):
    assert all_commands(commands) == [
        *BUILTIN_COMMANDS,
        {"command": "/billing", "description": "How billing works"},
        {"command": "/subscribe", "description": ""},
    ]
    listed = all_commands([])
    listed[0]["description"] = "changed"
    assert BUILTIN_COMMANDS[0]["description"] != "changed"


# respond: greeting


def test_the_first_message_gets_the_greeting_instead_of_a_fallback(flow):
    outcome = respond(flow, None, "hello there")
    assert outcome.replies == flow["greeting"]
    assert outcome.state == {"greeted": True, "misses": 0, "collecting": None}
    assert outcome.handoff is None
    assert outcome.collected == {}
    assert outcome.flagged is False


def test_greeting_then_a_quick_button_value_runs_its_intent(flow):
    first = respond(flow, None, "hi")
    assert first.replies[1]["rich_media"]["buttons"][0]["value"] == "pricing"
    second = respond(flow, first.state, "pricing")
    assert contents(second) == ["Plans start at $10 a month."]
    assert second.state["greeted"] is True


def test_a_first_message_that_matches_gets_the_greeting_then_the_answer(flow):
    outcome = respond(flow, None, "What's the price?")
    assert contents(outcome) == [
        "Hi! I'm the shop's assistant.",
        "How can I help?",
        "Plans start at $10 a month.",
    ]


def test_the_greeting_is_sent_once(flow):
    state = respond(flow, None, "hi").state
    outcome = respond(flow, state, "hi")
    assert contents(outcome) == ["I did not get that."]
    assert outcome.state["misses"] == 1


def test_without_a_greeting_the_first_miss_gets_the_fallback():
    outcome = respond(validate_flow({}), None, "hi")
    assert outcome.replies == [text(DEFAULT_FALLBACK)]
    assert outcome.state == {"greeted": True, "misses": 1, "collecting": None}


def test_the_greeting_comes_before_a_hand_off(flow):
    outcome = respond(flow, None, "/agent")
    assert contents(outcome) == [
        "Hi! I'm the shop's assistant.",
        "How can I help?",
        "A person will be with you shortly.",
    ]
    assert outcome.handoff == "requested"


# respond: intents


def test_values_match_exactly_and_before_keywords():
    flow = validate_flow(
        {
            "intents": [
                {"name": "a", "keywords": ["plans"], "replies": ["A"]},
                {"name": "b", "values": ["plans"], "replies": ["B"]},
            ]
        }
    )
    state = {"greeted": True}
    assert contents(respond(flow, state, "plans")) == ["B"]
    assert contents(respond(flow, state, "Plans")) == ["A"]
    assert contents(respond(flow, state, "  plans  ")) == ["B"]


def test_keywords_match_before_patterns_in_definition_order():
    flow = validate_flow(
        {
            "intents": [
                {"name": "a", "patterns": ["refund"], "replies": ["A"]},
                {"name": "b", "keywords": ["refund"], "replies": ["B"]},
                {"name": "c", "keywords": ["refund"], "replies": ["C"]},
            ]
        }
    )
    assert contents(respond(flow, {"greeted": True}, "I want a refund")) == ["B"]


@pytest.mark.parametrize(
    ("message", "matched"),
    [
        ("What's the PRICE?", True),
        ("price.", True),
        ("prices", False),
        ("overpriced", False),
        ("How much   does it\ncost?", True),
        ("how much does", False),
    ],
)
def test_keywords_match_whole_words_and_phrases_case_insensitively(flow, message, matched):
    outcome = respond(flow, greeted(flow), message)
    assert (contents(outcome) == ["Plans start at $10 a month."]) is matched


def test_patterns_search_case_insensitively(flow):
    state = greeted(flow)
    assert contents(respond(flow, state, "REFUND please")) == ["Refunds!"]
    assert contents(respond(flow, state, "I want my money  back")) == ["Refunds!"]
    assert contents(respond(flow, state, "about a refund")) == ["I did not get that."]


def test_a_match_resets_the_misses(flow):
    outcome = respond(flow, greeted(flow, misses=1), "price")
    assert outcome.state["misses"] == 0


def test_an_intent_with_handoff_hands_off_after_its_replies(flow):
    outcome = respond(flow, greeted(flow), "I have a complaint")
    assert contents(outcome) == ["Sorry!", "A person will be with you shortly."]
    assert outcome.handoff == "intent"
    assert outcome.state["collecting"] is None


# respond: commands


def test_help_lists_every_command(flow, commands):
    outcome = respond(flow, greeted(flow), "/HELP me", commands)
    assert outcome.replies == [
        text(
            "/help — Show what I can do\n"
            "/agent — Talk to a person\n"
            "/billing — How billing works\n"
            "/subscribe"
        )
    ]
    assert outcome.handoff is None


def test_a_bot_command_runs_its_intent(flow, commands):
    outcome = respond(flow, greeted(flow, misses=1), "/billing", commands)
    assert contents(outcome) == ["Billing is monthly."]
    assert outcome.state["misses"] == 0


def test_an_unknown_command_is_a_misunderstanding(flow, commands):
    outcome = respond(flow, greeted(flow), "/pricing", commands)
    assert contents(outcome) == ["I did not get that."]
    assert outcome.state["misses"] == 1


def test_agent_hands_off_on_request(flow):
    outcome = respond(flow, greeted(flow, misses=1), "/agent")
    assert outcome.replies == [text("A person will be with you shortly.")]
    assert outcome.handoff == "requested"
    assert outcome.state["misses"] == 0


def test_the_default_hand_off_message():
    outcome = respond(validate_flow({}), {"greeted": True}, "/agent")
    assert outcome.replies == [text(DEFAULT_HANDOFF_MESSAGE)]


# respond: a request for a person


@pytest.mark.parametrize(
    "message",
    ["Can I talk to a   HUMAN?", "I want a real person", "agent", "Operator!", "speak to someone"],
)
def test_asking_for_a_person_in_plain_words_hands_off(flow, message):
    outcome = respond(flow, greeted(flow), message)
    assert outcome.handoff == "requested"
    assert contents(outcome) == ["A person will be with you shortly."]


@pytest.mark.parametrize("message", ["humane pricing", "agents of change", "reagent"])
def test_a_person_phrase_only_counts_as_a_whole_word(flow, message):
    assert respond(flow, greeted(flow), message).handoff is None


def test_the_person_phrases_are_a_module_constant():
    assert "talk to a person" in PERSON_PHRASES and "representative" in PERSON_PHRASES


# respond: collecting a field


def test_collecting_an_email_invalid_then_valid(flow):
    asked = respond(flow, greeted(flow), "subscribe me to the newsletter")
    assert contents(asked) == ["Happy to sign you up.", "What's your email?"]
    assert asked.state["collecting"] == {
        "intent": "newsletter",
        "field": "email",
        "type": "email",
        "attempts": 0,
    }

    wrong = respond(flow, asked.state, "not an email")
    assert contents(wrong) == ["That doesn't look right. What's your email?"]
    assert wrong.state["collecting"]["attempts"] == 1
    assert wrong.collected == {}

    done = respond(flow, wrong.state, " Ann@Example.COM ")
    assert done.collected == {"email": "ann@example.com"}
    assert contents(done) == ["You're subscribed."]
    assert done.state == {"greeted": True, "misses": 0, "collecting": None}


def test_agent_while_collecting_hands_off_and_stops_collecting(flow):
    asked = respond(flow, greeted(flow), "newsletter")
    outcome = respond(flow, asked.state, "/agent")
    assert outcome.handoff == "requested"
    assert outcome.state["collecting"] is None
    assert outcome.collected == {}


def test_asking_for_a_person_while_collecting_hands_off(flow):
    asked = respond(flow, greeted(flow), "newsletter")
    outcome = respond(flow, asked.state, "can I talk to a human")
    assert outcome.handoff == "requested"
    assert outcome.state["collecting"] is None


def test_help_while_collecting_keeps_collecting(flow):
    asked = respond(flow, greeted(flow), "newsletter")
    outcome = respond(flow, asked.state, "/help")
    assert outcome.state["collecting"] == asked.state["collecting"]


def test_a_keyword_while_collecting_is_an_invalid_answer(flow):
    asked = respond(flow, greeted(flow), "newsletter")
    outcome = respond(flow, asked.state, "price")
    assert contents(outcome) == ["That doesn't look right. What's your email?"]


def test_too_many_invalid_answers_stop_collecting_and_count_a_miss(flow):
    state = respond(flow, greeted(flow), "newsletter").state
    for attempt in range(1, MAX_COLLECT_ATTEMPTS):
        outcome = respond(flow, state, "nope")
        state = outcome.state
        assert state["collecting"]["attempts"] == attempt
    outcome = respond(flow, state, "nope")
    assert outcome.state["collecting"] is None
    assert outcome.state["misses"] == 1
    assert contents(outcome) == ["I did not get that."]


def test_the_last_invalid_answer_can_hand_off(flow):
    state = respond(flow, greeted(flow, misses=1), "newsletter").state
    state = state | {"misses": 1, "collecting": state["collecting"] | {"attempts": 2}}
    outcome = respond(flow, state, "nope")
    assert outcome.handoff == "fallback"
    assert outcome.state["collecting"] is None


def default_collect(kind: str) -> dict:
    return validate_flow(
        {
            "intents": [
                {"name": "ask", "values": ["go"], "collect": {"field": "my_field", "type": kind}}
            ]
        }
    )


def test_collect_defaults_ask_thank_and_re_ask():
    flow = default_collect("text")
    asked = respond(flow, {"greeted": True}, "go")
    assert asked.replies == [text("What is your my field?")]
    wrong = respond(flow, asked.state, "x" * 501)
    assert wrong.replies == [text("That doesn't look right. What is your my field?")]
    done = respond(flow, wrong.state, "Ann")
    assert done.replies == [text(DEFAULT_DONE)]
    assert done.collected == {"my_field": "Ann"}


def test_a_custom_invalid_reply_is_used():
    flow = validate_flow(
        {
            "intents": [
                {
                    "name": "ask",
                    "values": ["go"],
                    "collect": {"field": "age", "type": "number", "invalid": ["A number, please."]},
                }
            ]
        }
    )
    asked = respond(flow, {"greeted": True}, "go")
    assert contents(respond(flow, asked.state, "ten")) == ["A number, please."]


@pytest.mark.parametrize(
    ("kind", "answer", "stored"),
    [
        ("email", "a@b.co", "a@b.co"),
        ("email", "First.Last+tag@Sub.Example.org", "first.last+tag@sub.example.org"),
        ("email", "a@b", None),
        ("email", "a b@c.co", None),
        ("email", "@b.co", None),
        ("email", "a@@b.co", None),
        ("email", "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 63 + ".com", None),
        ("phone", "+1 (555) 123-4567", "+15551234567"),
        ("phone", "555 1234", "5551234"),
        ("phone", "12345", None),
        ("phone", "1" * 21, None),
        ("phone", "555-CALL-NOW", None),
        ("phone", "12+345678", None),
        ("number", "42", "42"),
        ("number", "-3.5", "-3.5"),
        ("number", "1e5", None),
        ("number", "NaN", None),
        ("number", "4 2", None),
        ("text", "Ann Smith", "Ann Smith"),
        ("text", "x" * 500, "x" * 500),
        ("text", "x" * 501, None),
        ("text", "   ", None),
    ],
)
def test_collected_values_are_checked_and_normalized_by_type(kind, answer, stored):
    flow = default_collect(kind)
    asked = respond(flow, {"greeted": True}, "go")
    outcome = respond(flow, asked.state, answer)
    if stored is None:
        assert outcome.collected == {}
        assert outcome.state["collecting"]["attempts"] == 1
    else:
        assert outcome.collected == {"my_field": stored}
        assert outcome.state["collecting"] is None


def test_a_collection_the_flow_no_longer_has_is_dropped(flow):
    state = greeted(flow, collecting={"intent": "gone", "field": "x", "type": "text"})
    outcome = respond(flow, state, "price")
    assert contents(outcome) == ["Plans start at $10 a month."]
    assert outcome.collected == {}


# respond: misunderstandings and hand-off


def test_hand_off_after_n_misses(flow):
    first = respond(flow, greeted(flow), "blah")
    assert contents(first) == ["I did not get that."]
    assert first.state["misses"] == 1 and first.handoff is None
    second = respond(flow, first.state, "blah blah")
    assert second.handoff == "fallback"
    assert contents(second) == ["A person will be with you shortly."]
    assert second.state["misses"] == 0


def test_handoff_after_zero_never_hands_off():
    flow = validate_flow({"handoff_after": 0})
    state = {"greeted": True}
    for n in range(1, 30):
        outcome = respond(flow, state, "blah")
        assert outcome.handoff is None
        assert outcome.replies == [text(DEFAULT_FALLBACK)]
        state = outcome.state
        assert state["misses"] == n


def test_default_hand_off_after_three_misses():
    flow = validate_flow({})
    state = None
    for _ in range(2):
        outcome = respond(flow, state, "blah")
        assert outcome.handoff is None
        state = outcome.state
    assert respond(flow, state, "blah").handoff == "fallback"


# respond: moderation


def test_moderation_flags_and_runs_nothing_else(flow, commands):
    state = respond(flow, greeted(flow, misses=1), "newsletter").state | {"misses": 1}
    for message in ["You idiot, talk to a human", "/agent idiot", "BUY   followers now"]:
        outcome = respond(flow, state, message, commands)
        assert outcome.flagged is True
        assert contents(outcome) == ["Please keep it friendly."]
        assert outcome.handoff is None
        assert outcome.collected == {}
        assert outcome.state == state


def test_a_moderated_first_message_gets_no_greeting(flow):
    outcome = respond(flow, None, "idiot")
    assert contents(outcome) == ["Please keep it friendly."]
    assert outcome.state == {"greeted": False, "misses": 0, "collecting": None}
    assert respond(flow, outcome.state, "hi").replies == flow["greeting"]


def test_moderation_without_reply_sends_nothing():
    flow = validate_flow({"moderation": {"keywords": ["spam"]}})
    outcome = respond(flow, {"greeted": True}, "spam")
    assert outcome.flagged is True and outcome.replies == []


def test_keywords_of_moderation_match_whole_words_only(flow):
    assert respond(flow, greeted(flow), "idiotic").flagged is False


# respond: inputs and state


@pytest.mark.parametrize(
    "state",
    [
        {},
        {"greeted": True},
        {"misses": "many", "greeted": "yes"},
        {"greeted": True, "collecting": "email", "misses": -4},
        {"version": 0, "unknown": [1, 2]},
        ["not", "a", "dict"],
    ],
)
def test_a_state_of_another_shape_is_read_with_defaults(flow, state):
    outcome = respond(flow, state, "price")
    assert "Plans start at $10 a month." in contents(outcome)
    assert set(outcome.state) == {"greeted", "misses", "collecting"}
    assert outcome.state["greeted"] is True


@pytest.mark.parametrize(
    "collecting", [{"intent": "newsletter"}, {"intent": "newsletter", "attempts": True}]
)
def test_an_older_collecting_state_still_collects(flow, collecting):
    wrong = respond(flow, {"greeted": True, "collecting": collecting}, "price")
    assert contents(wrong) == ["That doesn't look right. What's your email?"]
    assert wrong.state["collecting"] == {
        "intent": "newsletter",
        "field": "email",
        "type": "email",
        "attempts": 1,
    }
    done = respond(flow, {"greeted": True, "collecting": collecting}, "a@b.co")
    assert done.collected == {"email": "a@b.co"}


def test_respond_does_not_mutate_its_inputs(flow, commands):
    flow_before, commands_before = copy.deepcopy(flow), copy.deepcopy(commands)
    state = respond(flow, greeted(flow), "newsletter").state
    state_before = copy.deepcopy(state)
    outcomes = [
        respond(flow, state, "nope", commands),
        respond(flow, state, "a@b.co", commands),
        respond(flow, state, "/help", commands),
        respond(flow, None, "pricing", commands),
        respond(flow, state, "idiot", commands),
    ]
    assert flow == flow_before and commands == commands_before and state == state_before
    for outcome in outcomes:
        for reply in outcome.replies:
            reply["content"] = "changed"
            if reply["rich_media"]:
                reply["rich_media"]["buttons"].clear()
        outcome.state["misses"] = 99
    assert flow == flow_before and state == state_before


def test_every_outcome_is_json_ready(flow, commands):
    state = None
    for message in ["hi", "pricing", "newsletter", "bad", "a@b.co", "/help", "/agent"]:
        outcome = respond(flow, state, message, commands)
        assert orjson.loads(orjson.dumps(outcome.state)) == outcome.state
        assert orjson.loads(orjson.dumps(outcome.replies)) == outcome.replies
        state = outcome.state


def test_an_outcome_is_frozen(flow):
    outcome = respond(flow, None, "hi")
    with pytest.raises(AttributeError):
        outcome.handoff = "requested"  # type: ignore[misc]


def test_a_pattern_that_backtracks_without_end_is_cut_short_and_does_not_match():
    flow = flows.validate_flow(
        {"intents": [{"name": "slow", "patterns": ["(a|aa)+$"], "replies": ["matched"]}]}
    )
    started = time.monotonic()
    out = flows.respond(flow, {"greeted": True}, "a" * 5000 + "!")
    assert time.monotonic() - started < 1.0
    assert out.replies and out.replies[0]["content"] != "matched"
