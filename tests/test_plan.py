from selectit.plan import common_prefix_len, plan_batches


def test_common_prefix_len():
    assert common_prefix_len([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert common_prefix_len([[5, 1], [6, 1]]) == 0
    assert common_prefix_len([[1, 2]]) == 2
    assert common_prefix_len([]) == 0


def test_plan_groups_sorts_and_caps():
    items = [[9, 1, 2, 3], [9, 1], [9, 1, 2], [7, 7, 7, 7, 7, 7], [7]]
    batches = plan_batches(items, [[0, 1, 2], [3, 4]], batch_size=2)
    assert [b.rows for b in batches] == [[1, 2], [0], [4, 3]]
    # group 1 shares [9, 1] but the shortest row keeps one token of its own; group 2 shares nothing
    assert [b.shared for b in batches] == [1, 1, 0]
    every = sorted(k for b in batches for k in b.rows)
    assert every == [0, 1, 2, 3, 4]


def test_token_budget_and_no_sharing():
    items = [[1] * n for n in (10, 10, 10, 40)]
    batches = plan_batches(items, [[0, 1, 2, 3]], batch_size=8, batch_tokens=30, share_prefix=False)
    assert [b.rows for b in batches] == [[0, 1, 2], [3]]  # 3 x 10 fits; the 40-token row runs alone
    assert all(b.shared == 0 for b in batches)


def test_plan_is_fixed_by_the_data():
    items = [[3, i % 4, i] for i in range(20)]
    a = plan_batches(items, [list(range(20))], batch_size=4)
    b = plan_batches(items, [list(reversed(range(20)))], batch_size=4)
    assert a == b  # the same batches whatever order the group lists its items in
    assert sorted(k for x in a for k in x.rows) == list(range(20))
