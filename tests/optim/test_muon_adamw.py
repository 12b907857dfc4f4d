"""MuonAdamW: its AdamW groups against torch.optim.AdamW, its Muon groups against Muon, state and schedulers.

Run: python -m pytest tests/optim/test_muon_adamw.py -q
"""

import copy

import pytest
import torch

from zaya_rl.optim.muon import Muon
from zaya_rl.optim.muon_adamw import MuonAdamW


def _params(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "matrix": torch.randn(12, 20, generator=g),
        "experts": torch.randn(3, 8, 12, generator=g),
        "vector": torch.randn(12, generator=g),
        "embed": torch.randn(30, 12, generator=g),
    }


def _grads(steps, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [{k: torch.randn(v.shape, generator=g) for k, v in _params().items()} for _ in range(steps)]


def _build(init):
    ps = {k: torch.nn.Parameter(v.clone()) for k, v in init.items()}
    groups = [
        {"params": [ps["matrix"], ps["experts"]], "algorithm": "muon"},
        {"params": [ps["embed"]], "algorithm": "adamw"},
        {"params": [ps["vector"]], "algorithm": "adamw", "weight_decay": 0.0, "name": "adamw/vectors"},
    ]
    return ps, MuonAdamW(groups, lr=0.01, weight_decay=0.1, betas=(0.9, 0.95), eps=1e-8)


def _step(opt, ps, grads):
    for k, p in ps.items():
        p.grad = grads[k].clone()
    opt.step()


def test_each_half_matches_its_reference():
    init, grads = _params(), _grads(4)
    ps, opt = _build(init)
    ref = {k: torch.nn.Parameter(v.clone()) for k, v in init.items()}
    ref_muon = Muon([ref["matrix"], ref["experts"]], lr=0.01, weight_decay=0.1)
    ref_adamw = torch.optim.AdamW(
        [{"params": [ref["embed"]]}, {"params": [ref["vector"]], "weight_decay": 0.0}],
        lr=0.01, weight_decay=0.1, betas=(0.9, 0.95), eps=1e-8,
    )  # fmt: skip
    for g in grads:
        _step(opt, ps, g)
        for k, p in ref.items():
            p.grad = g[k].clone()
        ref_muon.step()
        ref_adamw.step()
    for k in init:
        torch.testing.assert_close(ps[k], ref[k], rtol=1e-6, atol=1e-7, msg=k)


def test_state_holds_adamw_moments_only_and_round_trips():
    init, grads = _params(), _grads(5)
    ps, opt = _build(init)
    for g in grads[:2]:
        _step(opt, ps, g)
    assert set(opt.state) == {ps["embed"], ps["vector"]}
    saved = copy.deepcopy(
        opt.state_dict()
    )  # as torch.save/torch.load would; the live dict aliases the moments
    ps2, opt2 = _build({k: p.detach() for k, p in ps.items()})
    opt2.load_state_dict(saved)
    for g in grads[2:]:
        _step(opt, ps, g)
        _step(opt2, ps2, g)
    for k in init:
        torch.testing.assert_close(ps[k], ps2[k], rtol=0, atol=0, msg=k)


def test_lr_scheduler_drives_every_group():
    ps, opt = _build(_params())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (s + 1) / 4)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.0025] * 3)
    _step(opt, ps, _grads(1)[0])
    sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.005] * 3)
    assert opt.param_groups[2]["name"] == "adamw/vectors"


def test_bad_groups_raise():
    p = torch.nn.Parameter(torch.randn(4, 4))
    with pytest.raises(ValueError, match="'algorithm' must be one of"):
        MuonAdamW([{"params": [p]}], lr=0.1)
    with pytest.raises(ValueError, match="2-D matrices or 3-D"):
        MuonAdamW([{"params": [torch.nn.Parameter(torch.randn(4))], "algorithm": "muon"}], lr=0.1)
    with pytest.raises(TypeError, match="unknown options"):
        MuonAdamW([{"params": [p], "algorithm": "adamw"}], lr=0.1, momentum=0.9)
