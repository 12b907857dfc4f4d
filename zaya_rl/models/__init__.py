"""Policy models, the byte-level tokenizer, MoE router replay and decoding helpers.

- ``policy``: ``load_policy`` / ``build_model_and_tokenizer`` (presets ``tiny-zaya``, ``tiny-qwen3moe``, or
  any HF checkpoint folder), ``save_policy``.
- ``tokenizer``: the project's byte-level chat tokenizer.
- ``router_replay``: ``record_routing`` / ``replay_routing`` (R3) and the routed-experts layouts.
- ``sampling``: temperature / top-p sampling with behaviour log-probs.
- ``batch_cache``: merging and shrinking a KV cache for continuous batching.
- ``detokenize``: streaming-safe incremental detokenizer and the canary feed.
- ``commands``: ``zaya-rl model init``.

Submodules are imported explicitly; this package imports nothing heavy, so the CLI stays fast.
"""
