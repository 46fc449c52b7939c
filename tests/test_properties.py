"""Property-based tests (hypothesis): format round trips and the math's invariants."""

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from selectit import formats, reflection
from selectit.selection.policy import rank, select_fraction, select_top

text = st.text(min_size=1, max_size=40).filter(lambda s: s.strip())
alpaca = st.fixed_dictionaries(
    {"instruction": text, "output": text},
    optional={"input": st.text(max_size=20), "id": st.integers(), "meta": st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)},
)
turns = st.lists(st.tuples(st.sampled_from(["user", "assistant", "system"]), text), min_size=1, max_size=4)


def _conversation(schema, ts, reply):
    role, content = ("from", "value") if schema == "sharegpt" else ("role", "content")
    names = {"user": "human", "assistant": "gpt", "system": "system"} if schema == "sharegpt" else None
    msgs = [{role: names[r] if names else r, content: t} for r, t in ts]
    msgs.append({role: "gpt" if names else "assistant", content: reply})
    return {"conversations" if schema == "sharegpt" else "messages": msgs}


@settings(max_examples=40, deadline=None)
@given(objs=st.lists(alpaca, min_size=1, max_size=8), container=st.sampled_from(["json", "jsonl"]), data=st.data())
def test_alpaca_round_trip(tmp_path_factory, objs, container, data):
    path = tmp_path_factory.mktemp("rt") / f"in.{container}"
    if container == "json":
        path.write_text(json.dumps(objs, ensure_ascii=False), encoding="utf-8")
    else:
        path.write_text("".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objs), encoding="utf-8")
    ds = formats.read(path)
    picked = data.draw(st.lists(st.integers(0, len(objs) - 1), unique=True))
    out = path.with_name(f"out.{container}")
    formats.write(ds, picked, out)
    if container == "json":
        back = json.loads(out.read_text(encoding="utf-8"))
    else:
        # split on "\n" only: str.splitlines() also splits on \x85 and \u2028, which JSON leaves raw
        back = [json.loads(line) for line in out.read_bytes().decode("utf-8").split("\n")[:-1]]
    assert back == [objs[i] for i in picked]


@settings(max_examples=40, deadline=None)
@given(schema=st.sampled_from(["sharegpt", "messages"]),
       convs=st.lists(st.tuples(turns.filter(lambda t: t[-1][0] != "assistant" or len(t) > 1), text), min_size=1, max_size=5))
def test_conversation_round_trip(tmp_path_factory, schema, convs):
    objs = [_conversation(schema, ts, reply) for ts, reply in convs]
    path = tmp_path_factory.mktemp("conv") / "in.jsonl"
    path.write_text("".join(json.dumps(o) + "\n" for o in objs))
    ds = formats.read(path)
    assert ds.schema == schema and [r.response for r in ds.records] == [reply for _, reply in convs]
    out = path.with_name("out.jsonl")
    formats.write(ds, list(range(len(objs)))[::-1], out)
    assert [json.loads(line) for line in out.read_bytes().decode("utf-8").split("\n")[:-1]] == objs[::-1]


probs = arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 5), st.just(5)),
               elements=st.floats(0, 1, allow_nan=False))


@settings(max_examples=100, deadline=None)
@given(p=probs, mode=st.sampled_from(["paper", "reference"]), alpha=st.floats(0, 2))
def test_scores_are_bounded_and_permutation_equivariant(p, mode, alpha):
    token = reflection.token_scores(p, mode=mode)
    valid = p.sum(-1) > 0
    assert np.isnan(token[~valid]).all()
    assert ((token[valid] >= -1e-12) & (token[valid] <= 5 + 1e-12)).all()
    sent = reflection.sentence_scores(token, alpha=alpha)
    finite = np.isfinite(sent)
    top = np.where(np.isfinite(token), token, -np.inf).max(axis=1)
    assert (sent[finite] <= top[finite] + 1e-12).all()  # mean / (1 + alpha * std) <= mean <= max
    perm = np.random.default_rng(0).permutation(len(p))
    np.testing.assert_array_equal(reflection.sentence_scores(reflection.token_scores(p[perm], mode=mode), alpha=alpha),
                                  sent[perm])


@settings(max_examples=100, deadline=None)
@given(scores=arrays(np.float64, st.integers(0, 50), elements=st.floats(-5, 5) | st.just(np.nan)),
       fraction=st.floats(0.01, 1.0), top=st.integers(0, 60))
def test_selection_size_and_order(scores, fraction, top):
    valid = int(np.isfinite(scores).sum())
    chosen = select_fraction(scores, fraction)
    assert len(chosen) == min(int(np.floor(len(scores) * fraction + 1e-9)), valid)
    assert len(set(chosen.tolist())) == len(chosen)
    assert len(select_top(scores, top)) == min(top, valid)
    r = rank(scores)
    vals = scores[r][:valid]
    assert (np.diff(vals) <= 0).all()  # best first
    ties = [(a, b) for a, b in zip(r[:valid], r[1:valid]) if scores[a] == scores[b]]
    assert all(a < b for a, b in ties)  # equal scores keep input order
