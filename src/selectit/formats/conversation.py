"""Conversations: ShareGPT (``conversations`` of ``from``/``value``) and OpenAI-style ``messages``
(``role``/``content``).

Documented choice for multi-turn records: the whole conversation is rated. The final assistant turn
is the response; everything before it is the instruction. A single user turn is used as it is;
several turns (or a system message) are written one per paragraph as ``User: ...``,
``Assistant: ...``, ``System: ...``.
"""

from __future__ import annotations

_ROLES = {
    "human": "user", "user": "user",
    "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant", "bard": "assistant",
    "bing": "assistant", "model": "assistant",
    "system": "system",
}
SCHEMAS = {"sharegpt": ("conversations", "from", "value"), "messages": ("messages", "role", "content")}


def matches(obj: dict, schema: str) -> bool:
    return SCHEMAS[schema][0] in obj


def parse(obj: dict, schema: str) -> tuple[str, str]:
    """(instruction, response) of a conversation; ValueError with the reason when it has no reply."""
    list_key, role_key, text_key = SCHEMAS[schema]
    turns = obj.get(list_key)
    if not isinstance(turns, list) or not turns:
        got = "empty" if isinstance(turns, list) else "null" if turns is None else f"a {type(turns).__name__}"
        raise ValueError(f"field '{list_key}' is {got}; expected a non-empty list of turns")
    parsed = []
    for j, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise ValueError(f"turn {j} is a {type(turn).__name__}, expected an object")
        role = _ROLES.get(str(_field(turn, j, role_key)).lower())
        if role is None:
            raise ValueError(f"turn {j} has unknown {role_key} {turn.get(role_key)!r}")
        text = _field(turn, j, text_key)
        if not isinstance(text, str):
            raise ValueError(f"turn {j} field '{text_key}' is a {type(text).__name__}, expected a string")
        parsed.append((role, text))
    role, response = parsed[-1]
    if role != "assistant":
        raise ValueError("has no response: the last turn is not from the assistant")
    if not response.strip():
        raise ValueError("has an empty response (the last assistant turn is empty)")
    before = parsed[:-1]
    if not before:
        raise ValueError("has no instruction: the conversation is a single assistant turn")
    if len(before) == 1 and before[0][0] == "user":
        return before[0][1], response
    return "\n\n".join(f"{r.capitalize()}: {t}" for r, t in before), response


def _field(turn: dict, j: int, key: str):
    """``turn[key]``; a missing field and a null one are errors that say which."""
    if key not in turn:
        raise ValueError(f"turn {j} has no '{key}' field")
    if turn[key] is None:
        raise ValueError(f"turn {j} field '{key}' is null")
    return turn[key]
