"""Rating prompts and the rating template (the published template, byte for byte).

The published template, byte for byte::

    {rating_prompt}\n\nInstruction:{instruction}\nResponse:{response}\nThe answer is: \n

Prompt files hold one rating prompt per line (as the authors' ``rating_prompt.txt``); blank lines are
ignored. The 'chat' template wraps the same text in the model's own chat template (see
:func:`chat_parts`); 'auto' is 'chat' for a model that has a chat template and 'plain' otherwise. ``{max}`` in a prompt is replaced by the top of the rating scale (our default prompts use it),
nothing else is substituted, so other braces are safe.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from selectit.errors import ConfigError, read_text
from selectit.records import Record

TEMPLATES = ("auto", "plain", "chat")
LAYOUTS = ("prompt-first", "record-first", "record-once")
TEMPLATE_TAIL = "\nThe answer is: \n"
# In chat mode the template's answer cue opens the assistant's reply instead of ending the user turn.
CHAT_ANSWER_PREFIX = "The answer is: "
DEFAULT_PROMPTS = "default_prompts.txt"


def resolve_template(template: str, has_chat_template: bool, name: str) -> str:
    """The template a model is scored with: 'auto' becomes 'chat' when the model has a chat template
    and 'plain' otherwise; 'chat' on a model without one is an error."""
    if template == "auto":
        return "chat" if has_chat_template else "plain"
    if template == "chat" and not has_chat_template:
        raise ConfigError(f"model {name} has no chat template; use --template plain or auto")
    return template


def read_prompts(path: str | Path | None = None) -> list[str]:
    """Prompts from a file (one per line), or the packaged defaults when path is None."""
    if path is None:
        text = resources.files("selectit").joinpath("data", DEFAULT_PROMPTS).read_text(encoding="utf-8")
        source = "the default prompt set"
    else:
        text, source = read_text(path, "prompts file"), str(Path(path))
    prompts = [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise ConfigError(f"{source} holds no prompts (expected one rating prompt per line)")
    return prompts


def choose_prompts(prompts: list[str], num_prompts: int, scale: int) -> list[str]:
    """The first ``num_prompts`` prompts, with ``{max}`` filled in."""
    if num_prompts < 1:
        raise ConfigError(f"--num-prompts must be >= 1, got {num_prompts}")
    if num_prompts > len(prompts):
        raise ConfigError(f"--num-prompts {num_prompts} asks for more prompts than the {len(prompts)} available")
    return [p.replace("{max}", str(scale)) for p in prompts[:num_prompts]]


def rating_text(prompt: str, record: Record, layout: str = "prompt-first") -> str:
    """The text the model reads for one record and one rating prompt.

    prompt-first: the published template. record-first: the record first, then the rating prompt
    (``Instruction:{instruction}\nResponse:{response}\n\n{rating_prompt}`` and the same ending), so
    the P prompts of one record share the record's tokens. record-first changes what the model reads.
    record-once reads the record in the Alpaca prompt and the rating prompt as a later turn
    (selectit.measures.record_once); its labels follow the same answer cue, so they resolve on this text.
    """
    if layout == "record-first":
        return f"Instruction:{record.instruction}\nResponse:{record.response}\n\n{prompt}{TEMPLATE_TAIL}"
    return f"{prompt}\n\nInstruction:{record.instruction}\nResponse:{record.response}{TEMPLATE_TAIL}"


def rating_spans(prompt: str, record: Record, layout: str = "prompt-first") -> list[tuple[int, int]]:
    """Character spans of the record's instruction and response in ``rating_text(prompt, record, layout)``
    (what a rating pass pools a record's embedding over: not the rating prompt nor the template's words)."""
    start = len("Instruction:") if layout == "record-first" else len(prompt) + len("\n\nInstruction:")
    second = start + len(record.instruction) + len("\nResponse:")
    return [(start, start + len(record.instruction)), (second, second + len(record.response))]


def chat_parts(text: str) -> tuple[str, str]:
    """Split a rating text for the 'chat' template: (user message, start of the assistant's reply).

    The user turn is ``{rating_prompt}\n\nInstruction:{instruction}\nResponse:{response}``; the reply
    is opened with "The answer is: ", so the next token is the rating. (Leaving the cue in the user
    turn puts only ~16% of SmolLM2-135M's mass on the digits; opening the reply with it, ~86%.)
    """
    if text.endswith(TEMPLATE_TAIL):
        text = text[: -len(TEMPLATE_TAIL)]
    return text, CHAT_ANSWER_PREFIX


def labels_for_scale(scale: int) -> list[str]:
    """Rating labels '1'..'S'. S is 2..9 so that every label is one digit."""
    if not 2 <= scale <= 9:
        raise ConfigError(f"--scale must be in [2, 9], got {scale}")
    return [str(k) for k in range(1, scale + 1)]
