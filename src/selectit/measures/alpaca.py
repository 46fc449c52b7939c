"""The Alpaca prompt (Taori et al. 2023) the response-loss passes read a record in, as in the IFD authors'
code (Cherry_LLM, PROMPT_DICT): the instruction, the Alpaca ``input`` in "### Input:" when there is one,
then the response directly after "### Response:"."""

from __future__ import annotations

from selectit.records import Record

PROMPT_NO_INPUT = ("Below is an instruction that describes a task. Write a response that appropriately "
                   "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:")
PROMPT_INPUT = ("Below is an instruction that describes a task, paired with an input that provides further "
                "context. Write a response that appropriately completes the request.\n\n"
                "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:")


def alpaca_parts(record: Record) -> tuple[str, str] | None:
    """(instruction, input) of an Alpaca record with a non-empty input, else None."""
    raw = record.raw if isinstance(record.raw, dict) else {}
    if isinstance(raw.get("instruction"), str) and isinstance(raw.get("input"), str) and raw["input"].strip():
        return raw["instruction"], raw["input"]
    return None


def instruction_context(record: Record) -> str:
    """The Alpaca prompt for ``record``; the response follows it directly (no space, as in training)."""
    parts = alpaca_parts(record)
    if parts is not None:
        return PROMPT_INPUT.format(instruction=parts[0], input=parts[1])
    return PROMPT_NO_INPUT.format(instruction=record.instruction)


def blank_context(record: Record) -> str:
    """The Alpaca prompt with an empty instruction (the same for every record)."""
    return PROMPT_NO_INPUT.format(instruction="")
