"""Byzantine-server attacks (ByzSGD): formulas per recipient, registry, knowledge, errors."""

from __future__ import annotations

import math
import pickle
import subprocess
import sys

import pytest
import torch

from byzantium import attacks as A
from byzantium.attacks import AttackError, ServerAttackContext, get_server_attack
from byzantium.byzsgd import outliers_accept
from byzantium.cli import main as cli_main

EXPECTED = {"alie", "drop", "equivocation", "filter_hug", "random", "reverse", "silent", "stale"}
KNOWLEDGE = {"random": "none", "silent": "none", "reverse": "local", "drop": "local",
             "equivocation": "local", "stale": "local", "alie": "omniscient",
             "filter_hug": "defense-aware"}


def test_server_behaviours_per_recipient():
    gen = torch.Generator().manual_seed(0)
    C = torch.randn(4, 8, generator=gen)
    hist = [torch.full((8,), float(i)) for i in range(20)]
    pred = torch.randn(3, 8, generator=gen)
    bounds = torch.tensor([0.5, 1.0, 2.0])
    dirs = torch.nn.functional.normalize(torch.randn(3, 8, generator=gen), dim=1)

    def ctx(**kw):
        return ServerAttackContext(step=5, kind="pull", correct=C, reference=C.mean(0), recipients=3,
                                   generator=torch.Generator().manual_seed(3), history=hist, **kw)

    r = get_server_attack("random")(ctx())
    assert r.shape == (3, 8) and (r >= 0).all() and (r < 1).all() and not torch.equal(r[0], r[1])
    assert torch.allclose(get_server_attack("reverse")(ctx()), (-100 * C.mean(0)).expand(3, -1))
    e = get_server_attack("equivocation", scale=4.0)(ctx())
    assert torch.allclose((e[0] - C.mean(0)).norm(), torch.tensor(4.0))
    assert torch.allclose(e[0] - C.mean(0), -(e[1] - C.mean(0)))  # opposite pushes
    dr = get_server_attack("drop")(ctx())
    assert 0.1 < float((dr == 0).float().mean()) < 0.6
    a = get_server_attack("alie", z=2.0)(ctx())
    assert torch.allclose(a[0], C.mean(0) + 2.0 * C.std(0, unbiased=False))
    assert torch.equal(get_server_attack("stale", tau=10)(ctx())[0], hist[10])
    assert get_server_attack("silent")(ctx()) is None
    hug = get_server_attack("filter_hug")(ctx(predicted=pred, bounds=bounds, directions=dirs))
    dist = (hug - pred).norm(dim=1)
    assert torch.allclose(dist, 0.9 * bounds)
    assert all(outliers_accept(hug[j], pred[j], float(bounds[j])) for j in range(3))
    with pytest.raises(ValueError, match="unknown server attack 'nope'"):
        get_server_attack("nope")
    with pytest.raises(ValueError, match="unknown parameter"):
        get_server_attack("reverse", z=1.0)


def test_unknown_server_attack_lists_the_allowed_names():
    with pytest.raises(AttackError) as err:
        get_server_attack("equivocate")
    msg = str(err.value)
    assert "unknown server attack 'equivocate'" in msg
    listed = msg.split("available: ", 1)[1].split(", ")
    assert listed == sorted(EXPECTED) == A.server_attack_names()


def test_server_alie_is_the_worker_alie_vector():
    """One ALIE formula: the server's model is the worker ALIE's vector over the correct models."""
    C = torch.randn(5, 11, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    c = ServerAttackContext(step=0, kind="gather", correct=C, reference=C.mean(0), recipients=4,
                            generator=torch.Generator().manual_seed(0))
    out = get_server_attack("alie", z=-1.5)(c)
    assert out.shape == (4, 11) and torch.equal(out, out[:1].expand_as(out))
    assert torch.equal(out[0], A.alie_vector(C, -1.5))
    worker = A.AttackContext(honest=C, n=8, num_byzantine=3)
    assert torch.equal(out[0], A.get("alie", z=-1.5)(worker)[0])  # z given: same vector
    one = ServerAttackContext(step=0, kind="pull", correct=C[:1], reference=C[0], recipients=2,
                              generator=torch.Generator().manual_seed(0))
    assert torch.equal(get_server_attack("alie")(one), C[:1].expand(2, -1))  # sigma = 0


def test_registry_knowledge_and_describe():
    assert set(A.SERVER_REGISTRY) == EXPECTED
    assert {n: get_server_attack(n).knowledge for n in EXPECTED} == KNOWLEDGE
    rows = A.describe_server_attacks()
    assert [r[0] for r in rows] == sorted(EXPECTED)
    for name, knowledge, summary, defaults in rows:
        assert knowledge == KNOWLEDGE[name] and summary
    assert dict((r[0], r[3]) for r in rows) == {
        "alie": "z=1.0", "drop": "p=0.3", "equivocation": "scale=10.0", "filter_hug": "margin=0.9",
        "random": "", "reverse": "scale=100.0", "silent": "", "stale": "tau=10"}
    atk = get_server_attack("stale", tau=3)
    assert dict(atk.params) == {"tau": 3} and repr(atk) == "ServerAttack('stale', tau=3)"
    assert dict(get_server_attack("reverse").params) == {"scale": 100.0}
    with pytest.raises(TypeError):
        atk.params["tau"] = 4  # type: ignore[index]


def test_server_attack_equality_and_pickle():
    a = get_server_attack("equivocation", scale=3)
    assert a == get_server_attack("equivocation", scale=3.0) and a != get_server_attack("equivocation")
    b = pickle.loads(pickle.dumps(a))
    assert b == a and b.knowledge == "local"
    C = torch.randn(3, 6, generator=torch.Generator().manual_seed(0))

    def ctx():
        return ServerAttackContext(step=1, kind="pull", correct=C, reference=C.mean(0), recipients=4,
                                   generator=torch.Generator().manual_seed(9))

    assert torch.equal(b(ctx()), a(ctx()))  # same generator state, same models


def test_public_functions_match_registry():
    from byzantium.attacks import server as S

    C = torch.randn(3, 6, generator=torch.Generator().manual_seed(0))
    c = ServerAttackContext(step=1, kind="gather", correct=C, reference=C.mean(0), recipients=2,
                            generator=torch.Generator().manual_seed(0))
    assert torch.equal(S.reverse(c, scale=2.0), get_server_attack("reverse", scale=2.0)(c))
    with pytest.raises(AttackError, match="scale must be a finite number"):
        S.reverse(c, scale=math.inf)
    with pytest.raises(AttackError, match="expected a ServerAttackContext"):
        get_server_attack("silent")(C)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "name, params, match",
    [
        ("reverse", {"scale": math.nan}, "server attack reverse: scale must be a finite number"),
        ("equivocation", {"scale": True}, "scale must be a finite number"),
        ("alie", {"z": "auto"}, "server attack alie: z must be a finite number"),
        ("drop", {"p": 1.5}, r"server attack drop: p must be in \[0, 1\], got p=1.5"),
        ("drop", {"p": -0.1}, r"p must be in \[0, 1\]"),
        ("stale", {"tau": 0}, "server attack stale: tau must be an int >= 1, got tau=0"),
        ("stale", {"tau": 2.0}, "tau must be an int >= 1"),
        ("filter_hug", {"margin": math.inf}, "margin must be a finite number"),
        ("silent", {"x": 1}, r"server attack silent: unknown parameter\(s\) \['x'\]; accepted: \(none\)"),
    ],
)
def test_bad_server_params(name, params, match):
    with pytest.raises(AttackError, match=match):
        get_server_attack(name, **params)


def test_list_attacks_has_a_server_section(capsys):
    assert cli_main(["list", "attacks"]) == 0
    out = capsys.readouterr().out
    worker, server = out.split("server attacks (byzsgd.server_attack):")
    assert "worker attacks (attack.name):" in worker and "label_flip" in worker
    lines = {ln.split()[0]: ln for ln in server.strip().splitlines()[1:]}
    assert set(lines) == EXPECTED
    assert lines["equivocation"].split()[1:3] == ["local", "scale=10.0"]
    assert lines["filter_hug"].split()[1:3] == ["defense-aware", "margin=0.9"]
    assert "ipm" in worker and "epsilon=0.1, source=honest" in worker


def test_attacks_do_not_import_the_layers_above():
    code = ("import sys, byzantium.attacks; "
            "print(sorted(m for m in sys.modules if m.startswith(('byzantium.byzsgd', "
            "'byzantium.runtime', 'byzantium.training'))))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
