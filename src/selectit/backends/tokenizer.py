"""Text to token ids with a transformers tokenizer: what the backends that read one (hf, vllm) share, so
they all see the same ids."""

from __future__ import annotations

from collections.abc import Sequence

from selectit.errors import ConfigError
from selectit.prompts import chat_parts


class TokenizerText:
    """The text side of a backend with a transformers ``tokenizer`` and a ``template`` ('chat' or
    'plain'): encode, encode_plain, decode and end_token as :class:`selectit.backends.base.Backend`
    declares them."""

    tokenizer: object
    template: str

    def encode(self, text: str, suffix: str = "") -> list[int]:
        return encode_text(self.tokenizer, self.template, text, suffix)

    def encode_plain(self, text: str) -> list[int]:
        return self.tokenizer(text)["input_ids"]

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids))

    def end_token(self) -> int:
        return end_token(self.tokenizer)


def encode_text(tokenizer, template: str, text: str, suffix: str = "") -> list[int]:
    """Token ids of a rating text."""
    if template == "chat":
        user, reply = chat_parts(text)
        rendered = tokenizer.apply_chat_template(
            [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
        )
        return tokenizer(rendered + reply + suffix, add_special_tokens=False)["input_ids"]
    return tokenizer(text + suffix)["input_ids"]


def encode_turn_text(tokenizer, template: str, text: str) -> list[int]:
    """Token ids of a rating text as a later turn, after a record the model has already read (the
    record-once layout): 'chat', the next user turn as the chat template renders it after an
    exchange (no second system prompt, no BOS), then the answer cue (a template that renders a later
    turn differently from the start of a conversation, as Qwen3's does, gets its first-turn rendering
    instead, system prompt included); 'plain', a blank line and the text (no BOS)."""
    if template != "chat":
        return tokenizer("\n\n" + text, add_special_tokens=False)["input_ids"]
    user, reply = chat_parts(text)
    before = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]
    a = tokenizer.apply_chat_template(before, tokenize=False)
    b = tokenizer.apply_chat_template([*before, {"role": "user", "content": user}], tokenize=False,
                                      add_generation_prompt=True)
    turn = b[len(a):] if b.startswith(a) else tokenizer.apply_chat_template(
        [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True)
    return tokenizer(turn + reply, add_special_tokens=False)["input_ids"]


def end_token(tokenizer) -> int:
    """The id of the tokenizer's end-of-text token (what a fine-tuned response ends with)."""
    if tokenizer.eos_token_id is None:
        raise ConfigError("the model's tokenizer has no end-of-text (EOS) token, which the likelihood term "
                          "scores; use --likelihood-weight 0")
    return int(tokenizer.eos_token_id)
