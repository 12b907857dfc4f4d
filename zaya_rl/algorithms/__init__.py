"""The RL maths of zaya_rl, as pure tensor functions (no Ray, no I/O, no config objects).

- ``advantages``: MaxRL (default), Dr-GRPO and GRPO group advantages; registry ``ADVANTAGE_ESTIMATORS``.
- ``aggregation``: loss aggregation modes (Dr-GRPO's ``seq-mean-token-sum-norm`` by default); ``AGGREGATIONS``.
- ``loss``: DPPO Binary-TV mask and the policy loss with truncated IS, with namespaced ``loss/`` metrics.
- ``logprobs``: chunked token log-probs that never materialise ``[tokens × vocab]`` logits (the reference).
- ``fused_logprobs``: the same through fused Triton kernels on CUDA (cut-cross-entropy, Liger-Kernel), and
  which implementation runs (``trainer.logprob_impl``).

Definitions, citations and hand-computed values: research/algorithms.md §2-§4, §12.
"""
