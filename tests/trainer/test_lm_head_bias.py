"""ZAYA's ``lm_head_bias``: the trainer's log-probs include the output bias, and the bias gets its gradient.

The reference is the model's own forward (``model(...).logits``, which applies ``lm_head`` with its bias),
log-softmaxed whole at the sampling temperature.

Run: python -m pytest tests/trainer/test_lm_head_bias.py -q
"""

from __future__ import annotations

import torch

from zaya_rl.algorithms.loss import policy_loss
from zaya_rl.models.policy import PRESETS
from zaya_rl.models.tokenizer import build_byte_tokenizer
from zaya_rl.trainer.batch import TrainSample, collate
from zaya_rl.trainer.step import LossSettings, _micro_batch_loss, sequence_logprobs

T = 0.7
SETTINGS = LossSettings(temperature=T, delta=0.2, tis_cap=5.0, aggregation="seq-mean-token-sum-norm", max_len=16,
                        logprob_chunk_size=8, router_replay=False, grad_clip=1e9, micro_batch_size=4)


def _biased_zaya():
    from transformers import AutoModelForCausalLM

    tok = build_byte_tokenizer()
    config = PRESETS["tiny-zaya"]({"vocab_size": len(tok), "pad_token_id": tok.pad_token_id,
                                   "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id})
    config.lm_head_bias = True
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        model.lm_head.bias.copy_(torch.randn_like(model.lm_head.bias) * 3)  # large enough to matter
    return model


def _batch():
    samples = [TrainSample([5, 6, 7], [8, 9, 10], [-1.0, -2.0, -0.5], 1.5), TrainSample([11], [12, 13], [-0.3, -4.0], -1.0)]
    return collate(samples, pad_id=0)


def _reference_logprobs(model, mb):
    logits = model(input_ids=mb.input_ids, attention_mask=mb.attention_mask).logits
    logp = torch.log_softmax(logits.double() / T, dim=-1).gather(-1, mb.targets[..., None]).squeeze(-1)
    return torch.where(mb.loss_mask, logp, 0.0)


def test_trainer_logprobs_include_the_lm_head_bias():
    model, mb = _biased_zaya(), _batch()
    assert model.lm_head.bias is not None
    with torch.no_grad():
        ours = sequence_logprobs(model, mb, settings=SETTINGS)
        ref = _reference_logprobs(model, mb)
    torch.testing.assert_close(ours.double(), ref, rtol=1e-5, atol=1e-5)


def test_lm_head_bias_gets_the_loss_gradient():
    model, mb = _biased_zaya(), _batch()
    with torch.no_grad():  # on-policy behaviour log-probs: DPPO's trust region masks no token, every one has a gradient
        mb.behaviour_logp = _reference_logprobs(model, mb).float()
    kwargs = {"num_sequences": 2, "num_tokens": int(mb.loss_mask.sum()), "settings": SETTINGS}
    _micro_batch_loss(model, mb, **kwargs)[0].backward()
    ours = model.lm_head.bias.grad.clone()
    model.zero_grad()
    ref_logp = _reference_logprobs(model, mb).float()
    policy_loss(ref_logp, mb.behaviour_logp, mb.advantages, mb.loss_mask, delta=0.2, tis_cap=5.0,
                mode="seq-mean-token-sum-norm", max_len=16, num_sequences=2, num_tokens=kwargs["num_tokens"])[0].backward()
    assert ours.abs().max() > 1e-4
    torch.testing.assert_close(ours, model.lm_head.bias.grad, rtol=1e-4, atol=1e-6)
