"""Resolve the token id of each rating label in context (as the tokenizer produces it after the template's last characters).

A label's token depends on what precedes it (SentencePiece adds a word-start marker, byte-level BPE
may merge it with the whitespace before it), so we tokenize a real prompt with the label appended and
take the token the label became. This works for any tokenizer; nothing is hard-coded per model.

The prompt itself is tokenized alone, as the model reads it; its last characters may tokenize
differently once a label follows (SmolLM2 reads ": \\n" as ':', ' \\n' but ": \\n1" as ':', ' ', '\\n',
'1'). What matters is the label's own token, which we require to be the final token and to decode to
exactly the label (a leading space, as SentencePiece writes a word start, is allowed; a newline is
not), so it can never be silently merged with the template.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from selectit.errors import ConfigError


def resolve_label_ids(
    encode_with: Callable[[str], Sequence[int]],
    decode: Callable[[Sequence[int]], str],
    labels: Sequence[str],
    *,
    context: str = "",
) -> list[int]:
    """Token id of each label when it follows a real prompt.

    encode_with: suffix -> token ids of a real, fully rendered prompt with ``suffix`` appended, exactly
        as prompts are tokenized (special tokens, chat template); ``encode_with("")`` is the prompt.
    decode: token ids -> text.
    context: the prompt (its ending is quoted in error messages).
    Raises ConfigError when a label does not end up as one token of its own after the prompt, or when
    two labels share an id.
    """
    ids = []
    for label in labels:
        full = list(encode_with(label))
        last = full[-1] if full else None
        if last is None or decode([last]).lstrip(" ") != label:
            got = decode(full[-3:]) if full else ""
            raise ConfigError(
                f"rating label {label!r} is not a single token of its own after the prompt ending "
                f"{context[-20:]!r} for this tokenizer (the prompt's last tokens with it decode as {got!r}); "
                "use another template or a model whose tokenizer has single-digit tokens"
            )
        ids.append(last)
    if len(set(ids)) != len(ids):
        raise ConfigError(f"rating labels {list(labels)} do not map to distinct tokens: {ids}")
    return ids
