import pytest

from byzantium.byzsgd import ByzSGDError, ByzSGDParams


def test_async_bounds_named():
    with pytest.raises(ByzSGDError, match=r"n_ps >= 3\*f_ps \+ 2.*n_ps=4, f_ps=1"):
        ByzSGDParams(n_ps=4, f_ps=1, n_w=10, f_w=3)
    with pytest.raises(ByzSGDError, match=r"n_w >= 3\*f_w \+ 1.*n_w=9, f_w=3"):
        ByzSGDParams(n_ps=5, f_ps=1, n_w=9, f_w=3)
    ByzSGDParams(n_ps=5, f_ps=1, n_w=10, f_w=3)  # the tightest legal deployment
    assert ByzSGDParams(n_ps=1, f_ps=0, n_w=10, f_w=3).quorum_ps == 1  # one trusted server


def test_sync_defaults_to_async_bounds_relaxed_flag_allows_majorities():
    with pytest.raises(ByzSGDError, match=r"n_ps >= 3\*f_ps \+ 2.*relaxed=True"):
        ByzSGDParams(n_ps=3, f_ps=1, n_w=3, f_w=1, variant="sync")
    p = ByzSGDParams(n_ps=3, f_ps=1, n_w=3, f_w=1, variant="sync", relaxed=True)
    assert (p.quorum_ps, p.quorum_w) == (3, 3)
    with pytest.raises(ByzSGDError, match=r"n_w >= 2\*f_w \+ 1.*n_w=4, f_w=2"):
        ByzSGDParams(n_ps=3, f_ps=1, n_w=4, f_w=2, variant="sync", relaxed=True)
    with pytest.raises(ByzSGDError, match="only allowed with variant='sync'"):
        ByzSGDParams(n_ps=5, f_ps=1, n_w=4, f_w=1, relaxed=True)


def test_quorum_bounds_named():
    with pytest.raises(ByzSGDError, match=r"MDA needs q_w >= 2\*f_w \+ 1, got q_w=6, f_w=3"):
        ByzSGDParams(n_ps=5, f_ps=1, n_w=10, f_w=3, q_w=6)
    with pytest.raises(ByzSGDError, match=r"median needs q_ps >= 2\*f_ps \+ 1, got q_ps=2, f_ps=1"):
        ByzSGDParams(n_ps=5, f_ps=1, n_w=10, f_w=3, q_ps=2)
    with pytest.raises(ByzSGDError, match=r"q_ps must be <= n - f = 4"):
        ByzSGDParams(n_ps=5, f_ps=1, n_w=10, f_w=3, q_ps=5)
    p = ByzSGDParams(n_ps=5, f_ps=1, n_w=10, f_w=3)
    assert (p.quorum_ps, p.quorum_w) == (4, 7)
    assert ByzSGDParams(n_ps=5, f_ps=1, n_w=10, f_w=3, variant="sync").quorum_w == 10
    with pytest.raises(ByzSGDError, match="variant must be"):
        ByzSGDParams(n_ps=5, f_ps=1, n_w=10, f_w=3, variant="partial")
    with pytest.raises(ByzSGDError, match="gather_period must be an int >= 1"):
        ByzSGDParams(n_ps=5, f_ps=1, n_w=10, f_w=3, gather_period=0)


def test_gather_period_auto():
    p = ByzSGDParams(n_ps=5, f_ps=1, n_w=10, f_w=3)
    assert p.resolve_period(1e-3) == 333  # floor(1 / (3 * 1e-3)) (§2.4)
    assert p.resolve_period(0.1) == 3
    assert p.resolve_period(0.5) == 1  # floor gives 0: clamped
    assert ByzSGDParams(n_ps=5, f_ps=1, n_w=10, f_w=3, lipschitz=10.0).resolve_period(1e-3) == 33
    assert ByzSGDParams(n_ps=5, f_ps=1, n_w=10, f_w=3, gather_period=7).resolve_period(0.1) == 7
    with pytest.raises(ByzSGDError, match="lipschitz must be"):
        ByzSGDParams(n_ps=5, f_ps=1, n_w=10, f_w=3, lipschitz=0.0)
