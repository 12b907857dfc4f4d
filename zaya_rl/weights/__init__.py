"""Weight sync from the trainer to the rollout engines: messages, bucket planning, transports.

- ``zaya_rl.weights.base``: ``WeightUpdate`` (the message), ``WeightSender`` (trainer side), ``PushReport``.
- ``zaya_rl.weights.buckets``: pure bucket planning (``plan_buckets``).
- ``zaya_rl.weights.senders``: ``state_dict``, ``file``, ``nccl``, ``ipc`` senders; ``make_sender``.
- ``zaya_rl.weights.flat``: an update as one flat (pinned) buffer: ``FlatWeights``, host staging, one-write safetensors.
- ``zaya_rl.weights.files``: safetensors bucket folders (the ``file`` transport).
- ``zaya_rl.weights.receive``: applying an update to an engine without native transfer (torch, fake).
- The vLLM engine side is ``zaya_rl.rollout.vllm_weights``.

Importing this package imports neither torch nor Ray.
"""
