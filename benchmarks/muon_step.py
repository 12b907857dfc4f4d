"""Momentum-free Muon (zaya_rl.optim.Muon) vs torch.optim.Muon(momentum=0) on ZAYA-shaped layers.

The 2-D hidden matrices of ``--layers`` ZAYA decoder layers (CCA attention projections, router MLP) go through
both optimizers with identical gradients: time per step (median, the two interleaved so machine load drifts
hit both), optimizer-state bytes, and the largest parameter difference after the run. The 3-D expert stacks
(``gate_up_proj [E, 2I, H]`` with halves split, ``down_proj [E, H, I]``) then go through ours alone, since
torch.optim.Muon rejects 3-D parameters.

Shapes follow transformers' ZayaForCausalLM layer; the defaults are scaled down for a CPU box. ZAYA1-8B itself:
    python benchmarks/muon_step.py --device cuda --hidden 2048 --head-dim 128 --experts 16 --moe-intermediate 2048
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from zaya_rl.optim import Muon


def zaya_layer_matrices(a: argparse.Namespace) -> dict[str, tuple[int, ...]]:
    """Muon-trained parameter shapes of one ZAYA decoder layer (from ZayaForCausalLM, algorithms.md §5)."""
    return {
        "q_proj": (a.heads * a.head_dim, a.hidden),
        "k_proj": (a.kv_heads * a.head_dim, a.hidden),
        "v_proj_current": (a.kv_heads * a.head_dim // 2, a.hidden),
        "v_proj_delayed": (a.kv_heads * a.head_dim // 2, a.hidden),
        "o_proj": (a.hidden, a.heads * a.head_dim),
        "router.down_proj": (a.router_hidden, a.hidden),
        "router.fc1": (a.router_hidden, a.router_hidden),
        "router.fc2": (a.router_hidden, a.router_hidden),
        "router.out_proj": (a.experts + 1, a.router_hidden),
    }


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _timed_step(opt: torch.optim.Optimizer, params, grads, device: str) -> float:
    for p, g in zip(params, grads, strict=True):
        p.grad = g
    _sync(device)
    t0 = time.perf_counter()
    opt.step()
    _sync(device)
    return time.perf_counter() - t0


def _state_bytes(opt: torch.optim.Optimizer) -> int:
    return sum(
        v.numel() * v.element_size() for s in opt.state.values() for v in s.values() if torch.is_tensor(v)
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--head-dim", type=int, default=32)
    p.add_argument("--router-hidden", type=int, default=128)
    p.add_argument("--experts", type=int, default=4)
    p.add_argument("--moe-intermediate", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--steps", type=int, default=5, help="timed steps (after one warm-up step)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    a = p.parse_args()
    dev = a.device
    g = torch.Generator(device=dev).manual_seed(0)
    shapes = [s for _ in range(a.layers) for s in zaya_layer_matrices(a).values()]
    init = [torch.randn(s, device=dev, generator=g) * 0.02 for s in shapes]
    grads = [[torch.randn(s, device=dev, generator=g) for s in shapes] for _ in range(a.steps + 1)]
    ours_p = [torch.nn.Parameter(x.clone()) for x in init]
    ref_p = [torch.nn.Parameter(x.clone()) for x in init]
    ours = Muon(ours_p, lr=0.02, weight_decay=0.1, adjust_lr_fn="match_rms_adamw")
    ref = torch.optim.Muon(ref_p, lr=0.02, weight_decay=0.1, momentum=0.0, adjust_lr_fn="match_rms_adamw")
    t_ours, t_ref = [], []
    for i, step_grads in enumerate(grads):  # step 0 is the warm-up
        to, tr = _timed_step(ours, ours_p, step_grads, dev), _timed_step(ref, ref_p, step_grads, dev)
        if i:
            t_ours.append(to)
            t_ref.append(tr)
    diff = max((x - y).abs().max().item() for x, y in zip(ours_p, ref_p, strict=True))
    n2d = sum(x.numel() for x in init)
    print(
        f"ZAYA-shaped 2-D matrices: {len(shapes)} tensors, {n2d:,} params, device={dev}, {a.steps} timed steps"
    )
    print(f"{'optimizer':<34} {'ms/step':>9} {'state bytes':>13}")
    print(f"{'zaya_rl Muon':<34} {statistics.median(t_ours) * 1e3:>9.1f} {_state_bytes(ours):>13,}")
    print(
        f"{'torch.optim.Muon(momentum=0)':<34} {statistics.median(t_ref) * 1e3:>9.1f} {_state_bytes(ref):>13,}"
    )
    print(
        f"time ratio ours/torch = {statistics.median(t_ours) / statistics.median(t_ref):.2f}x; "
        f"max |param diff| after {a.steps + 1} steps = {diff:.2e}"
    )

    e, i_, h = a.experts, a.moe_intermediate, a.hidden
    experts = [
        torch.nn.Parameter(torch.randn(e, 2 * i_, h, device=dev, generator=g) * 0.02),
        torch.nn.Parameter(torch.randn(e, h, i_, device=dev, generator=g) * 0.02),
    ]
    opt = Muon(
        [{"params": experts[:1], "split_halves": True}, {"params": experts[1:]}], lr=0.02, weight_decay=0.1
    )
    times = [
        _timed_step(opt, experts, [torch.randn_like(x) for x in experts], dev) for _ in range(a.steps + 1)
    ][1:]
    try:
        torch.optim.Muon(experts)
        verdict = "accepted"
    except ValueError as err:
        verdict = f"rejects them ({err})"
    print(
        f"3-D experts gate_up [{e}, {2 * i_}, {h}] (halves split) + down [{e}, {h}, {i_}]: "
        f"zaya_rl Muon {statistics.median(times) * 1e3:.1f} ms/step per layer, state bytes {_state_bytes(opt)}; "
        f"torch.optim.Muon {verdict}"
    )


if __name__ == "__main__":
    main()
