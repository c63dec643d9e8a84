"""The index set's ranking of moves is deterministic (no database): net benefits per MB that
differ below the noise tie, and a tie goes to the smaller index, then to the definition's text."""

from __future__ import annotations

import heapq

from pg_architect.advisors.index_candidates import Candidate
from pg_architect.advisors.index_set import Entry, Search, _round_sig


def _search(sizes: dict[str, int]) -> tuple[Search, dict[str, str]]:
    s = Search(db=None, settings=None, prover=None, plan_as=None)  # type: ignore[arg-type]
    names = {}
    for col, size in sizes.items():
        c = Candidate("s", "t", (col,))
        s.pool[c.definition()] = Entry(cand=c, userid=10, size=size)
        names[col] = c.definition()
    return s, names


def test_round_sig():
    assert _round_sig(1234.5) == 1200.0
    assert _round_sig(0.012345) == 0.012
    assert _round_sig(-987.0) == -990.0
    assert _round_sig(0.0) == 0.0


def test_sub_noise_difference_is_a_tie_won_by_the_smaller_index():
    s, n = _search({"a": 3 * 1048576, "b": 2 * 1048576})
    # 1,000.4 vs 1,004 ms per MB: the same at 2 significant digits; b is smaller
    ka = s._rank(n["a"], 3001.2, 3.0)
    kb = s._rank(n["b"], 2008.0, 2.0)
    assert ka[0] == kb[0]
    assert min(ka, kb) == kb


def test_equal_sizes_tie_on_the_definition_text_in_any_insertion_order():
    for order in (("a", "b"), ("b", "a")):
        s, n = _search({c: 1048576 for c in order})
        heap = [(s._rank(d, 500.0, 1.0), d) for d in n.values()]
        heapq.heapify(heap)
        assert heapq.heappop(heap)[1] == n["a"]


def test_a_real_difference_is_not_a_tie():
    s, n = _search({"a": 1048576, "b": 4 * 1048576})
    assert s._rank(n["b"], 4 * 1200.0, 4.0) < s._rank(n["a"], 1000.0, 1.0)
