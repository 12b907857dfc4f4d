"""The plugin's pure parts against transformers' ZAYA modules (no vLLM needed; fast).

python -m pytest tests/vllm_plugin/test_cca_routing.py -q

- CCA state maths (``zaya_rl.vllm_plugin.cca``) against transformers' ``ZayaCCAProjection``: packed
  prefill of several sequences, chunked prefill carrying the state, and token-by-token decode all give
  the q/k/v transformers computes on each whole sequence (float32, |Δ| <= 1e-5), with value biases on.
- Expert choice (``routing.zaya_route``) against transformers' ``ZayaRouter`` (after its skip -> 0
  rewrite) and against ``router_replay``'s recording (skip kept as E).
- Checkpoint name mapping (``weights.target``).
"""

from __future__ import annotations

import pytest
import torch

from zaya_rl.vllm_plugin.cca import ConvWeights, cca_decode, cca_qkv, cca_varlen
from zaya_rl.vllm_plugin.routing import zaya_route
from zaya_rl.vllm_plugin.weights import Target, target

TOL = 1e-5
_SMALL_VOCAB = {"vocab_size": 16, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}


def _cca_layer(k0: int = 2, k1: int = 2, heads: int = 8, kv_heads: int = 2, head_dim: int = 8, seed: int = 0):
    from transformers import ZayaConfig
    from transformers.models.zaya.modeling_zaya import ZayaCCAProjection

    cfg = ZayaConfig(hidden_size=32, num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=head_dim,
                     cca_time0=k0, cca_time1=k1, attention_bias=True, num_hidden_layers=1, **_SMALL_VOCAB)
    torch.manual_seed(seed)
    layer = ZayaCCAProjection(cfg, layer_idx=0).eval()
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return layer


def _pieces(layer, x: torch.Tensor):
    """Our split of the projection: qk conv input, value rows [current | delayed], conv weights, v bias."""
    q, k = layer.q_proj(x), layer.k_proj(x)
    v = torch.cat([layer.v_proj_current(x), layer.v_proj_delayed(x)], dim=-1)
    w = ConvWeights(layer.conv_qk_depthwise.weight, layer.conv_qk_depthwise.bias, layer.conv_qk_grouped.weight,
                    layer.conv_qk_grouped.bias, layer.num_attention_heads + layer.num_key_value_heads)
    v_bias = torch.cat([layer.v_proj_current.bias, layer.v_proj_delayed.bias])
    return q, k, v, w, v_bias


def _reference(layer, x: torch.Tensor):
    q, k, v = layer(x[None], past_key_values=None)
    return q[0].flatten(1), k[0].flatten(1), v[0].flatten(1)


def _assemble(layer, q, k, v, out, vp):
    return cca_qkv(q, k, v, out, vp, layer.num_key_value_heads, v.shape[1] // 2)


@pytest.mark.parametrize("k0,k1", [(2, 2), (3, 2), (2, 4)])
def test_packed_prefill_matches_transformers_per_sequence(k0, k1):
    layer = _cca_layer(k0, k1)
    lengths = [1, 2, 5, 17]
    xs = [torch.randn(n, 32) for n in lengths]
    x = torch.cat(xs)
    q, k, v, w, v_bias = _pieces(layer, x)
    qsl = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()])
    n, c = len(lengths), q.shape[1] + k.shape[1]
    with torch.no_grad():
        out, vp, fin_c, fin_v = cca_varlen(torch.cat([q, k], 1), v, qsl, torch.zeros(n, w.state_len, c),
                                           v_bias.expand(n, -1), w)
        got = _assemble(layer, q, k, v, out, vp)
        for i, xi in enumerate(xs):
            rows = slice(int(qsl[i]), int(qsl[i + 1]))
            for g, r in zip(got, _reference(layer, xi), strict=True):
                assert (g[rows] - r).abs().max() <= TOL
            # final states: last K conv inputs (zero-padded on the left), last token's values
            qk_i = torch.cat([layer.q_proj(xi), layer.k_proj(xi)], 1)
            padded = torch.cat([torch.zeros(w.state_len, c), qk_i])
            assert (fin_c[i] - padded[-w.state_len:]).abs().max() <= TOL
            assert torch.equal(fin_v[i], v[rows][-1])


def test_chunked_prefill_and_decode_carry_the_state():
    layer = _cca_layer()
    x = torch.randn(23, 32)
    q, k, v, w, v_bias = _pieces(layer, x)
    qk = torch.cat([q, k], 1)
    with torch.no_grad():
        ref = _reference(layer, x)
        conv = torch.zeros(1, w.state_len, qk.shape[1])
        vst = v_bias[None]
        outs, vps = [], []
        for lo, hi in [(0, 7), (7, 8), (8, 19)]:  # chunked prefill, one chunk of a single token
            o, p_, conv, vst = cca_varlen(qk[lo:hi], v[lo:hi], torch.tensor([0, hi - lo]), conv, vst, w)
            outs.append(o)
            vps.append(p_)
        for t in range(19, 23):  # then decode
            o, p_, conv, vst = cca_decode(qk[t : t + 1], v[t : t + 1], conv, vst, w)
            outs.append(o)
            vps.append(p_)
        got = _assemble(layer, q, k, v, torch.cat(outs), torch.cat(vps))
    for g, r in zip(got, ref, strict=True):
        assert (g - r).abs().max() <= TOL


def test_decode_batch_keeps_sequences_apart():
    layer = _cca_layer()
    a, b = torch.randn(6, 32), torch.randn(9, 32)
    with torch.no_grad():
        pa, pb = _pieces(layer, a), _pieces(layer, b)
        w, v_bias = pa[3], pa[4]
        c = pa[0].shape[1] + pa[1].shape[1]
        # prefill both but the last token, then decode the last tokens as one batch of 2
        qk_a, qk_b = torch.cat(pa[:2], 1), torch.cat(pb[:2], 1)
        qsl = torch.tensor([0, 5, 13])
        _, _, conv, vst = cca_varlen(torch.cat([qk_a[:5], qk_b[:8]]), torch.cat([pa[2][:5], pb[2][:8]]), qsl,
                                     torch.zeros(2, w.state_len, c), v_bias.expand(2, -1), w)
        out, vp, _, _ = cca_decode(torch.cat([qk_a[5:], qk_b[8:]]), torch.cat([pa[2][5:], pb[2][8:]]), conv, vst, w)
        for i, (p, x) in enumerate([(pa, a), (pb, b)]):
            got = _assemble(layer, p[0][-1:], p[1][-1:], p[2][-1:], out[i : i + 1], vp[i : i + 1])
            for g, r in zip(got, _reference(layer, x), strict=True):
                assert (g - r[-1:]).abs().max() <= TOL


def _router(num_experts: int = 8, seed: int = 0):
    from transformers import ZayaConfig
    from transformers.models.zaya.modeling_zaya import ZayaRouter

    cfg = ZayaConfig(hidden_size=32, router_hidden_size=16, num_experts=num_experts, num_hidden_layers=2,
                     **_SMALL_VOCAB)
    torch.manual_seed(seed)
    router = ZayaRouter(cfg, layer_idx=1).eval()
    with torch.no_grad():
        for p in router.parameters():
            p.copy_(torch.randn_like(p))
        router.balancing_biases.copy_(torch.randn(num_experts + 1) * 0.1)
        router.balancing_biases[-1] = 0.3  # skip frequently chosen
    return router


def test_route_matches_transformers_and_replay_recording():
    from zaya_rl.models.router_replay import ROUTER_FAMILIES

    router = _router()
    x, states = torch.randn(1, 200, 32), torch.randn(1, 200, 16)
    with torch.no_grad():
        out = router(x, states)
        logits, weights, idx = out[0], out[1], out[2]
        r = zaya_route(torch.softmax(logits, -1), router.balancing_biases, 1)
        native = ROUTER_FAMILIES["ZayaRouter"].native(router, out)
    skip = r.chosen == 8
    assert 0 < int(skip.sum()) < 200  # both paths exercised
    assert torch.equal(r.chosen, native)  # what router replay records, skip as E
    assert torch.equal(r.expert_ids.long(), idx) and torch.equal(r.weights, weights.float())
    assert (r.weights[skip] == 0).all() and (r.expert_ids[skip] == 0).all()


def test_checkpoint_name_mapping():
    qkv = "model.layers.3.self_attn.qkv_proj"
    assert target(f"{qkv}.q_proj.weight", True) == Target("param", f"{qkv}.proj.weight", "q")
    assert target(f"{qkv}.v_proj_delayed.bias", True) == Target("param", f"{qkv}.proj.bias", "v_delayed")
    assert target(f"{qkv}.conv_qk_grouped.weight", True) == Target("param", f"{qkv}.conv_qk_grouped.weight")
    assert target("model.layers.0.mlp.experts.gate_up_proj", True) == Target(
        "experts", "model.layers.0.mlp.experts", "gate_up_proj"
    )
    assert target("model.layers.0.mlp.gate.balancing_biases", True) == Target(
        "param", "model.layers.0.mlp.gate.balancing.biases"
    )
    assert target("lm_head.weight", True).kind == "skip"
    assert target("lm_head.weight", False) == Target("param", "lm_head.weight")
