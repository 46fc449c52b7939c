"""Rating tokens are resolved in context, per tokenizer (SPEC 1.6)."""

import pytest

from conftest import build_byte_level_tokenizer, build_metaspace_tokenizer
from selectit.errors import ConfigError
from selectit.labels import resolve_label_ids
from selectit.prompts import TEMPLATE_TAIL

LABELS = ["1", "2", "3", "4", "5"]
PROMPT = "Rate it from 1 to 5.\n\nInstruction:Say hi\nResponse:Hello" + TEMPLATE_TAIL


def _resolve(tok, prompt=PROMPT):
    return resolve_label_ids(lambda s: tok(prompt + s)["input_ids"], tok.decode, LABELS, context=prompt)


@pytest.mark.parametrize("build", [build_byte_level_tokenizer, build_metaspace_tokenizer])
def test_built_tokenizers(build):
    tok = build()
    ids = _resolve(tok)
    assert len(set(ids)) == 5
    assert [tok.decode([i]).strip() for i in ids] == LABELS
    # the ids are those of the digits as the tokenizer writes them after the template's newline
    for label, i in zip(LABELS, ids):
        assert tok(PROMPT + label)["input_ids"][-1] == i


def test_byte_level_and_metaspace_differ():
    """Two really different tokenizers: ids and how the template ending tokenizes both differ."""
    a, b = build_byte_level_tokenizer(), build_metaspace_tokenizer()
    assert a(PROMPT)["input_ids"][0] != b(PROMPT)["input_ids"][0]  # metaspace adds a BOS
    assert b(PROMPT)["input_ids"][0] == b.bos_token_id


@pytest.mark.embedded
def test_smollm2_tokenizer_in_context(embedded_backend):
    """SmolLM2 reads ': \\n' as ':', ' \\n' but ': \\n1' as ':', ' ', '\\n', '1': the digit is what counts."""
    tok = embedded_backend.tokenizer
    ids = resolve_label_ids(lambda s: embedded_backend.encode(PROMPT, s), embedded_backend.decode, LABELS)
    assert ids == [tok.convert_tokens_to_ids(d) for d in LABELS]
    from selectit.backends.hf import HFBackend

    chat = HFBackend(embedded_backend.model, tok, name="chat", template="chat")
    cue = tok("<|im_start|>assistant\nThe answer is: ", add_special_tokens=False)["input_ids"]
    assert chat.encode(PROMPT)[-len(cue):] == cue
    assert resolve_label_ids(lambda s: chat.encode(PROMPT, s), chat.decode, LABELS) == ids


def test_label_merged_with_the_template_is_an_error():
    vocab = {"x": 0, "\n1": 1, "1": 2, "2": 3}

    def encode(s):  # a tokenizer that merges a newline with the digit after it
        out, rest = [0], s[len("x\n"):] if s.startswith("x\n") else s
        return out + ([1] if rest == "1" else [vocab.get(rest, 0)] if rest else [])

    decode = {0: "x", 1: "\n1", 2: "1", 3: "2"}
    with pytest.raises(ConfigError, match="not a single token"):
        resolve_label_ids(lambda s: encode("x\n" + s), lambda ids: "".join(decode[i] for i in ids), ["1", "2"])


def test_multi_token_label_is_an_error():
    with pytest.raises(ConfigError, match="not a single token"):
        resolve_label_ids(lambda s: [7] + [ord(c) for c in s], lambda ids: "".join(chr(i) for i in ids), ["10"])


def test_labels_sharing_an_id_is_an_error():
    with pytest.raises(ConfigError, match="distinct"):
        resolve_label_ids(lambda s: [7, 9], lambda ids: "1", ["1", "1"])
