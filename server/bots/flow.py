"""Flow bots: the JSON definition an admin edits in the console, checked and normalized
(`validate_flow`, `validate_commands`), and the bot's answer to one end-user message
(`respond`).

Pure functions over dicts: no I/O, no database, no clock. The bots service loads the flow
and the session's bot state, calls `respond`, and then stores the new state, sends the
replies, stores the collected attributes and hands the conversation off; none of that
belongs here.

A normalized flow has every key, with lists where the definition may leave one out; an empty
`fallback`, `handoff_message` or collect `prompt`/`invalid`/`done` means the platform's
default reply, an empty `greeting` means no greeting, and an empty moderation `reply` means
a flagged message gets no answer.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NoReturn

import orjson
import regex
from marshmallow import ValidationError

from server.errors import InvalidInput
from server.schemas import MessageBodySchema
from server.validation import unstorable_reason

BUILTIN_COMMANDS = [
    {"command": "/help", "description": "Show what I can do"},
    {"command": "/agent", "description": "Talk to a person"},
]

# Whole words or phrases, case-insensitive, by which an end user asks for a person.
PERSON_PHRASES = (
    "talk to a person",
    "talk to a human",
    "talk to someone",
    "speak to a person",
    "speak to a human",
    "speak to someone",
    "speak with someone",
    "real person",
    "live person",
    "live agent",
    "human",
    "agent",
    "operator",
    "representative",
)

COLLECT_TYPES = ("text", "email", "phone", "number")

MAX_INTENTS = 100
MAX_MATCHERS = 50
MAX_REPLIES = 10
MAX_COMMANDS = 20
MAX_KEYWORD_LENGTH = 100
MAX_PATTERN_LENGTH = 200
MAX_VALUE_LENGTH = 500
MAX_DESCRIPTION_LENGTH = 200
MAX_HANDOFF_AFTER = 20
MAX_FLOW_BYTES = 512 * 1024
DEFAULT_HANDOFF_AFTER = 3
# Invalid answers to a prompt after which the bot stops asking and counts a misunderstanding.
MAX_COLLECT_ATTEMPTS = 3
MAX_TEXT_ANSWER = 500
MAX_EMAIL_LENGTH = 254

DEFAULT_FALLBACK = "Sorry, I didn't get that. Type /help to see what I can do, or ask for a person."
DEFAULT_HANDOFF_MESSAGE = "Connecting you with a person. Someone will reply here soon."
DEFAULT_DONE = "Thanks!"
DEFAULT_PROMPT = "What is your {field}?"
INVALID_PREFIX = "That doesn't look right."

NAME_RE = re.compile(r"[a-z0-9_-]{1,64}")
FIELD_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
COMMAND_RE = re.compile(r"/[a-z][a-z0-9_-]{0,31}")
EMAIL_RE = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
PHONE_SEPARATORS_RE = re.compile(r"[\s()-]")
PHONE_DIGITS_RE = re.compile(r"[0-9]{6,20}")
NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)")
MAX_NUMBER_LENGTH = 64

_FLOW_KEYS = ("greeting", "intents", "fallback", "handoff_after", "handoff_message", "moderation")
_INTENT_KEYS = ("name", "keywords", "patterns", "values", "replies", "collect", "handoff")
_COLLECT_KEYS = ("field", "type", "prompt", "invalid", "done")
_MODERATION_KEYS = ("keywords", "patterns", "reply")
_COMMAND_KEYS = ("command", "description", "intent")
_BUILTIN_NAMES = frozenset(c["command"] for c in BUILTIN_COMMANDS)

_BODY = MessageBodySchema()


def validate_flow(data: Any) -> dict:
    """A normalized copy of a flow definition, or raise InvalidInput(message) whose message
    names the path of the first problem, e.g.
    'flow.intents[2].replies[0].rich_media.buttons: Missing data for required field.'

    Names, fields and keywords are lower-cased and stripped; plain-string replies become
    text replies; missing lists become empty ones. The result holds only dicts, lists, str,
    int, bool and None.
    """
    path = "flow"
    _object(data, path, _FLOW_KEYS)
    flow = {
        "greeting": _replies(data.get("greeting"), f"{path}.greeting"),
        "intents": _intents(data.get("intents"), f"{path}.intents"),
        "fallback": _replies(data.get("fallback"), f"{path}.fallback"),
        "handoff_after": _handoff_after(data.get("handoff_after"), f"{path}.handoff_after"),
        "handoff_message": _replies(data.get("handoff_message"), f"{path}.handoff_message"),
        "moderation": _moderation(data.get("moderation"), f"{path}.moderation"),
    }
    if len(orjson.dumps(flow)) > MAX_FLOW_BYTES:
        _fail(path, f"Larger than {MAX_FLOW_BYTES} bytes.")
    return flow


def validate_commands(commands: Any, flow: dict | None) -> list[dict]:
    """A bot's own commands: a list (max 20) of {"command": "/word" (lower-cased,
    ^/[a-z][a-z0-9_-]{0,31}$, not /help or /agent, unique), "description": str (max 200,
    may be empty), "intent": str | None}.

    For a flow bot (`flow` given, a validate_flow() result) `intent` is required and names an
    intent of the flow; for a webhook bot (`flow` None) it must be absent or None. Raises
    InvalidInput naming the path of the first problem ('commands[1].command: ...').
    """
    path = "commands"
    items = _list(commands, path, MAX_COMMANDS)
    intents = None if flow is None else {i["name"] for i in flow.get("intents") or []}
    seen: set[str] = set()
    result = []
    for index, item in enumerate(items):
        at = f"{path}[{index}]"
        _object(item, at, _COMMAND_KEYS)
        if "command" not in item:
            _fail(f"{at}.command", "Missing data for required field.")
        command = _string(item["command"], f"{at}.command", max_length=33).lower()
        if not COMMAND_RE.fullmatch(command):
            _fail(
                f"{at}.command",
                "Must be '/' then a letter, then up to 31 letters, digits, '_' or '-'.",
            )
        if command in _BUILTIN_NAMES:
            _fail(f"{at}.command", f"{command} is a built-in command.")
        if command in seen:
            _fail(f"{at}.command", f"Duplicate command {command}.")
        seen.add(command)
        description = _string(
            "" if item.get("description") is None else item["description"],
            f"{at}.description",
            max_length=MAX_DESCRIPTION_LENGTH,
            allow_empty=True,
        )
        intent = item.get("intent")
        if intents is None:
            if intent is not None:
                _fail(f"{at}.intent", "Only a flow bot's commands run an intent.")
        else:
            if intent is None:
                _fail(f"{at}.intent", "Missing data for required field.")
            intent = _string(intent, f"{at}.intent", max_length=64).lower()
            if intent not in intents:
                _fail(f"{at}.intent", f"No intent named '{intent}' in the flow.")
        result.append({"command": command, "description": description, "intent": intent})
    return result


def all_commands(commands: list[dict]) -> list[dict]:
    """BUILTIN_COMMANDS followed by the bot's own, each {"command", "description"}: what the
    clients show."""
    own = [
        {"command": c["command"], "description": c.get("description") or ""} for c in commands or []
    ]
    return [dict(c) for c in BUILTIN_COMMANDS] + own


def _fail(path: str, message: str) -> NoReturn:
    raise InvalidInput(f"{path}: {message}")


def _object(value: Any, path: str, keys: tuple[str, ...]) -> dict:
    if not isinstance(value, dict):
        _fail(path, "Must be an object.")
    for key in value:
        if not isinstance(key, str) or unstorable_reason(key):
            _fail(path, "Field names must be valid Unicode without NUL characters.")
        if key not in keys:
            _fail(f"{path}.{key[:64]}", "Unknown field.")
    return value


def _list(value: Any, path: str, max_items: int) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        _fail(path, "Must be a list.")
    if len(value) > max_items:
        _fail(path, f"At most {max_items} items.")
    return value


def _string(
    value: Any, path: str, *, max_length: int, allow_empty: bool = False, strip: bool = True
) -> str:
    if not isinstance(value, str):
        _fail(path, "Not a valid string.")
    reason = unstorable_reason(value)
    if reason:
        _fail(path, reason)
    if strip:
        value = value.strip()
    if not value and not allow_empty:
        _fail(path, "Must not be empty.")
    if len(value) > max_length:
        _fail(path, f"Longer than {max_length} characters.")
    return value


def _replies(value: Any, path: str) -> list[dict]:
    return [_reply(item, f"{path}[{i}]") for i, item in enumerate(_list(value, path, MAX_REPLIES))]


def _reply(value: Any, path: str) -> dict:
    if isinstance(value, str):
        body: Any = {"content": value}
    elif isinstance(value, dict):
        if "client_message_id" in value:
            _fail(f"{path}.client_message_id", "Unknown field.")
        body = value
    else:
        _fail(path, "Must be a string or an object.")
    try:
        loaded = _BODY.load(body)
    except ValidationError as exc:
        trail, message = _first_error(exc.messages)
        if isinstance(value, str) and trail == ("content",):
            trail = ()
        _fail(path + _suffix(trail), message)
    return {
        "content": loaded["content"],
        "content_type": loaded["content_type"],
        "rich_media": loaded["rich_media"],
    }


def _first_error(messages: Any, trail: tuple = ()) -> tuple[tuple, str]:
    """The path and text of marshmallow's first error message."""
    if isinstance(messages, dict):
        for key, sub in messages.items():
            return _first_error(sub, trail if key == "_schema" else (*trail, key))
    if isinstance(messages, list) and messages:
        head = messages[0]
        return (trail, head) if isinstance(head, str) else _first_error(head, trail)
    return trail, str(messages)


def _suffix(trail: tuple) -> str:
    return "".join(f"[{key}]" if isinstance(key, int) else f".{key}" for key in trail)


def _intents(value: Any, path: str) -> list[dict]:
    seen: set[str] = set()
    result = []
    for index, item in enumerate(_list(value, path, MAX_INTENTS)):
        at = f"{path}[{index}]"
        _object(item, at, _INTENT_KEYS)
        if "name" not in item:
            _fail(f"{at}.name", "Missing data for required field.")
        name = _string(item["name"], f"{at}.name", max_length=64).lower()
        if not NAME_RE.fullmatch(name):
            _fail(f"{at}.name", "Must be 1 to 64 letters, digits, '_' or '-'.")
        if name in seen:
            _fail(f"{at}.name", f"Duplicate intent name '{name}'.")
        seen.add(name)
        intent = {
            "name": name,
            "keywords": _keywords(item.get("keywords"), f"{at}.keywords"),
            "patterns": _patterns(item.get("patterns"), f"{at}.patterns"),
            "values": [
                _string(v, f"{at}.values[{i}]", max_length=MAX_VALUE_LENGTH)
                for i, v in enumerate(_list(item.get("values"), f"{at}.values", MAX_MATCHERS))
            ],
            "replies": _replies(item.get("replies"), f"{at}.replies"),
            "collect": _collect(item.get("collect"), f"{at}.collect"),
            "handoff": _boolean(item.get("handoff"), f"{at}.handoff"),
        }
        if intent["collect"] is not None and intent["handoff"]:
            # The hand-off ends the collection, so the prompt's answer would never be read.
            _fail(f"{at}.handoff", "An intent that collects a field cannot also hand off.")
        result.append(intent)
    return result


def _keywords(value: Any, path: str) -> list[str]:
    return [
        " ".join(_string(k, f"{path}[{i}]", max_length=MAX_KEYWORD_LENGTH).lower().split())
        for i, k in enumerate(_list(value, path, MAX_MATCHERS))
    ]


def _patterns(value: Any, path: str) -> list[str]:
    result = []
    for i, pattern in enumerate(_list(value, path, MAX_MATCHERS)):
        at = f"{path}[{i}]"
        pattern = _string(pattern, at, max_length=MAX_PATTERN_LENGTH, strip=False)
        try:
            _pattern(pattern)
        except (regex.error, OverflowError, RecursionError) as exc:
            _fail(at, f"Not a valid regular expression: {exc}.")
        result.append(pattern)
    return result


def _collect(value: Any, path: str) -> dict | None:
    if value is None:
        return None
    _object(value, path, _COLLECT_KEYS)
    if "field" not in value:
        _fail(f"{path}.field", "Missing data for required field.")
    name = _string(value["field"], f"{path}.field", max_length=64).lower()
    if not FIELD_RE.fullmatch(name):
        _fail(f"{path}.field", "Must be a letter, then up to 63 letters, digits or '_'.")
    kind = "text" if value.get("type") is None else value["type"]
    if kind not in COLLECT_TYPES:
        _fail(f"{path}.type", f"Must be one of: {', '.join(COLLECT_TYPES)}.")
    return {
        "field": name,
        "type": kind,
        "prompt": _replies(value.get("prompt"), f"{path}.prompt"),
        "invalid": _replies(value.get("invalid"), f"{path}.invalid"),
        "done": _replies(value.get("done"), f"{path}.done"),
    }


def _boolean(value: Any, path: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        _fail(path, "Not a valid boolean.")
    return value


def _handoff_after(value: Any, path: str) -> int:
    if value is None:
        return DEFAULT_HANDOFF_AFTER
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(path, "Not a valid integer.")
    if not 0 <= value <= MAX_HANDOFF_AFTER:
        _fail(path, f"Must be between 0 and {MAX_HANDOFF_AFTER}.")
    return value


def _moderation(value: Any, path: str) -> dict:
    if value is None:
        value = {}
    _object(value, path, _MODERATION_KEYS)
    return {
        "keywords": _keywords(value.get("keywords"), f"{path}.keywords"),
        "patterns": _patterns(value.get("patterns"), f"{path}.patterns"),
        "reply": _replies(value.get("reply"), f"{path}.reply"),
    }


@dataclass(frozen=True, slots=True)
class Outcome:
    """The bot's answer to one end-user message.

    `replies`: each {"content", "content_type", "rich_media"}, in the order to send them.
    `state`: the new bot state to store for the session (JSON-ready).
    `handoff`: None, or why the conversation goes to a person: "requested" (the end user
    asked), "intent" (an intent with handoff: true), "fallback" (too many misunderstandings).
    `collected`: attributes to store on the end user, e.g. {"email": "a@b.co"}.
    `flagged`: the message broke a moderation rule.
    """

    replies: list[dict]
    state: dict
    handoff: str | None
    collected: dict[str, str]
    flagged: bool


@dataclass(slots=True)
class _Turn:
    greeting: bool
    misses: int
    collecting: dict | None
    replies: list[dict] = field(default_factory=list)
    handoff: str | None = None
    collected: dict[str, str] = field(default_factory=dict)


def respond(
    flow: dict, state: dict | None, text: str, commands: list[dict] | None = None
) -> Outcome:
    """The bot's answer to one end-user text message (quick-button and dropdown picks arrive
    as text equal to the choice's value).

    `flow` is a validate_flow() result; `state` the previous Outcome.state, None at the start
    of a session (a state of an older shape is read with defaults for what it lacks);
    `commands` the bot's own commands (validate_commands()). Mutates none of its inputs.

    In order: moderation (flags the message and does nothing else), commands (/agent,
    /help, the bot's own), a request for a person in plain words, the answer to a field
    being collected, the intents (values, then keywords, then patterns), and else a
    misunderstanding, which hands off after `handoff_after` in a row. The greeting, on the
    first answer of a session, comes before all of it and is the whole answer to a message
    that matched nothing.
    """
    greeted, misses, collecting = _read_state(flow, state)
    text = text.strip() if isinstance(text, str) else ""
    moderation = flow.get("moderation") or {}
    if _matches(text, moderation.get("keywords"), moderation.get("patterns")):
        return Outcome(
            replies=_copy(moderation.get("reply")),
            state=_state(greeted, misses, collecting),
            handoff=None,
            collected={},
            flagged=True,
        )
    greeting = [] if greeted else _copy(flow.get("greeting"))
    turn = _Turn(greeting=bool(greeting), misses=misses, collecting=collecting)
    command = text.split()[0].lower() if text.startswith("/") else None
    if command == "/agent":
        _hand_off(flow, turn, "requested")
    elif command == "/help":
        turn.replies.append(_text(_help(commands or [])))
    elif command is not None:
        intent = _command_intent(flow, commands or [], command)
        if intent is None:
            _misunderstood(flow, turn)
        else:
            _run(flow, turn, intent)
    elif _asks_for_person(text):
        _hand_off(flow, turn, "requested")
    elif turn.collecting is not None:
        _answer_collect(flow, turn, text)
    else:
        intent = _match_intent(flow, text)
        if intent is None:
            _misunderstood(flow, turn)
        else:
            _run(flow, turn, intent)
    return Outcome(
        replies=greeting + turn.replies,
        state=_state(True, turn.misses, turn.collecting),
        handoff=turn.handoff,
        collected=turn.collected,
        flagged=False,
    )


def _read_state(flow: dict, state: Any) -> tuple[bool, int, dict | None]:
    """(greeted, misses, collecting) from a stored state of any shape. A collection whose
    intent the flow no longer has, or no longer collects with, is dropped."""
    if not isinstance(state, dict):
        return False, 0, None
    greeted = state.get("greeted") is True
    misses = state.get("misses")
    if isinstance(misses, bool) or not isinstance(misses, int) or misses < 0:
        misses = 0
    collecting = None
    stored = state.get("collecting")
    if isinstance(stored, dict):
        intent = _intent(flow, stored.get("intent"))
        if intent is not None and intent.get("collect"):
            attempts = stored.get("attempts")
            if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 0:
                attempts = 0
            collecting = _collecting(intent, attempts)
    return greeted, misses, collecting


def _state(greeted: bool, misses: int, collecting: dict | None) -> dict:
    return {
        "greeted": greeted,
        "misses": misses,
        "collecting": None if collecting is None else dict(collecting),
    }


def _collecting(intent: dict, attempts: int) -> dict:
    collect = intent["collect"]
    return {
        "intent": intent["name"],
        "field": collect["field"],
        "type": collect.get("type") or "text",
        "attempts": attempts,
    }


def _intent(flow: dict, name: Any) -> dict | None:
    if not isinstance(name, str):
        return None
    return next((i for i in flow.get("intents") or [] if i.get("name") == name), None)


def _command_intent(flow: dict, commands: list[dict], command: str) -> dict | None:
    for own in commands:
        if own.get("command") == command:
            return _intent(flow, own.get("intent"))
    return None


def _match_intent(flow: dict, text: str) -> dict | None:
    intents = flow.get("intents") or []
    for intent in intents:
        if text and text in (intent.get("values") or []):
            return intent
    for intent in intents:
        if _matches(text, intent.get("keywords"), None):
            return intent
    for intent in intents:
        if _matches(text, None, intent.get("patterns")):
            return intent
    return None


def _run(flow: dict, turn: _Turn, intent: dict) -> None:
    turn.replies += _copy(intent.get("replies"))
    turn.misses = 0
    collect = intent.get("collect")
    if collect:
        turn.replies += _prompt(collect)
        turn.collecting = _collecting(intent, 0)
    else:
        turn.collecting = None
    if intent.get("handoff"):
        _hand_off(flow, turn, "intent")


def _answer_collect(flow: dict, turn: _Turn, text: str) -> None:
    collect = _intent(flow, turn.collecting["intent"])["collect"]
    value = _collected_value(collect.get("type") or "text", text)
    if value is not None:
        turn.collected = {collect["field"]: value}
        turn.replies += _copy(collect.get("done")) or [_text(DEFAULT_DONE)]
        turn.collecting = None
        turn.misses = 0
        return
    attempts = turn.collecting["attempts"] + 1
    if attempts >= MAX_COLLECT_ATTEMPTS:
        turn.collecting = None
        _misunderstood(flow, turn)
        return
    turn.collecting = {**turn.collecting, "attempts": attempts}
    turn.replies += _copy(collect.get("invalid")) or _invalid(_prompt(collect))


def _collected_value(kind: str, text: str) -> str | None:
    """The normalized answer for a field of this type, or None when it is not one."""
    if kind == "email":
        if len(text) <= MAX_EMAIL_LENGTH and EMAIL_RE.fullmatch(text):
            return text.lower()
        return None
    if kind == "phone":
        plus = text.startswith("+")
        digits = PHONE_SEPARATORS_RE.sub("", text[1:] if plus else text)
        return ("+" if plus else "") + digits if PHONE_DIGITS_RE.fullmatch(digits) else None
    if kind == "number":
        if len(text) <= MAX_NUMBER_LENGTH and NUMBER_RE.fullmatch(text):
            return text
        return None
    return text if 1 <= len(text) <= MAX_TEXT_ANSWER else None


def _misunderstood(flow: dict, turn: _Turn) -> None:
    if turn.greeting:
        return
    turn.misses += 1
    handoff_after = flow.get("handoff_after", DEFAULT_HANDOFF_AFTER)
    if handoff_after and turn.misses >= handoff_after:
        _hand_off(flow, turn, "fallback")
    else:
        turn.replies += _copy(flow.get("fallback")) or [_text(DEFAULT_FALLBACK)]


def _hand_off(flow: dict, turn: _Turn, reason: str) -> None:
    turn.handoff = reason
    turn.collecting = None
    turn.misses = 0
    turn.replies += _copy(flow.get("handoff_message")) or [_text(DEFAULT_HANDOFF_MESSAGE)]


def _prompt(collect: dict) -> list[dict]:
    field_name = collect["field"].replace("_", " ")
    return _copy(collect.get("prompt")) or [_text(DEFAULT_PROMPT.format(field=field_name))]


def _invalid(prompt: list[dict]) -> list[dict]:
    """The default answer to an invalid value: the prompt again, said to be a retry."""
    if prompt and prompt[0]["content_type"] == "text":
        first = {**prompt[0], "content": f"{INVALID_PREFIX} {prompt[0]['content']}"}
        return [first, *prompt[1:]]
    return [_text(INVALID_PREFIX), *prompt]


def _help(commands: list[dict]) -> str:
    return "\n".join(
        f"{c['command']} — {c['description']}" if c["description"] else c["command"]
        for c in all_commands(commands)
    )


def _text(content: str) -> dict:
    return {"content": content, "content_type": "text", "rich_media": None}


def _copy(replies: Any) -> list[dict]:
    return copy.deepcopy(list(replies or []))


def _asks_for_person(text: str) -> bool:
    return bool(text) and _phrases_re(PERSON_PHRASES).search(text) is not None


def _matches(text: str, keywords: Any, patterns: Any) -> bool:
    if not text:
        return False
    if keywords and _phrases_re(tuple(keywords)).search(text):
        return True
    return any(_search(p, text) for p in patterns or [])


# An admin's pattern runs on every end user's message: a pattern that backtracks without end
# (`(a|aa)+$`) must not stall the server. The `regex` package (re's syntax, plus a timeout)
# stops a search after this long; it then counts as no match.
PATTERN_TIMEOUT_SECONDS = 0.05


@lru_cache(maxsize=1024)
def _pattern(pattern: str) -> regex.Pattern:
    return regex.compile(pattern, regex.IGNORECASE | regex.VERSION0)


def _search(pattern: str, text: str) -> bool:
    try:
        return _pattern(pattern).search(text, timeout=PATTERN_TIMEOUT_SECONDS) is not None
    except TimeoutError:
        return False


@lru_cache(maxsize=1024)
def _phrases_re(phrases: tuple[str, ...]) -> re.Pattern[str]:
    """One case-insensitive pattern matching any of the phrases as whole words, whatever
    the whitespace between their words."""
    alternatives = "|".join(r"\s+".join(map(re.escape, p.split())) for p in phrases if p.split())
    if not alternatives:
        return re.compile(r"(?!)")
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)
