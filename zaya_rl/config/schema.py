"""The one config tree of a zaya_rl run.

Every field is documented by the docstring under it; choices are ``Literal``; numbers carry bounds.
Cross-field checks live in ``RunConfig`` and raise errors naming the dotted field.
``docs/configuration.md`` is generated from this module (``zaya-rl config docs``), so it cannot drift.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_serializer, model_validator

from zaya_rl.config.base import ActorResources, Device, Section
from zaya_rl.config.gpu import PlacementConfig, VLLMConfig, WeightSyncConfig
from zaya_rl.config.recipe import BehavioralConfig, RewardModelSection, RSAConfig, TTCConfig

__all__ = [  # the sections defined in gpu.py and recipe.py belong to this tree too
    "BehavioralConfig", "PlacementConfig", "RewardModelSection", "RSAConfig", "TTCConfig", "VLLMConfig",
    "WeightSyncConfig",
]

AdvantageName = Literal["maxrl", "dr_grpo", "grpo"]
AggregationMode = Literal["token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"]


class ModelConfig(Section):
    preset: Literal["tiny-zaya", "tiny-qwen3moe"] | None = "tiny-zaya"
    """Build a small model and tokenizer locally from a preset (no download). Ignored when ``path`` is set."""
    path: str | None = None
    """HF checkpoint folder (model + tokenizer) to start from, e.g. a ZAYA1-8B or Qwen3-MoE SFT checkpoint."""
    init_seed: int = 0
    """Seed of the random initialisation of a preset model."""
    dtype: Literal["float32", "bfloat16"] = "float32"
    """Parameter dtype of the trainer's and the torch engine's model copies."""
    fp32_lm_head: bool = False
    """Compute the final projection (lm_head) in float32 in trainer and engine (bf16 models only)."""

    @model_validator(mode="after")
    def _one_source(self) -> ModelConfig:
        if self.path is None and self.preset is None:
            raise ValueError("model: set either model.preset or model.path")
        return self


class SamplingConfig(Section):
    temperature: float = Field(1.0, ge=0.0)
    """Sampling temperature. Trainer log-probs are computed at the same temperature (algorithms.md §2)."""
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    """Nucleus sampling mass; behaviour log-probs are renormalised over the kept tokens."""
    max_new_tokens: int = Field(64, ge=1)
    """Generation budget per rollout, in tokens."""


class CanaryConfig(Section):
    enabled: bool = True
    """Run the streaming LZ77 compressibility canary on every rollout (algorithms.md §7)."""
    threshold: float = Field(0.10, gt=0.0, lt=1.0)
    """A chunk whose marginal compression ratio is below this counts as degenerate."""
    patience: int = Field(8, ge=1)
    """Flag after this many consecutive degenerate chunks."""
    chunk_bytes: int = Field(512, ge=16)
    """Bytes of UTF-8 text per canary chunk."""
    stop_generation: bool = True
    """Stop a flagged sequence early (finish reason ``degenerate``) to save compute."""
    on_flag: Literal["zero_reward", "drop", "none"] = "zero_reward"
    """What a flagged rollout becomes: reward 0, dropped from the loss (counted), or only logged."""


class RolloutConfig(Section):
    engine: Literal["torch", "vllm", "fake"] = "torch"
    """Rollout engine: ``torch`` (transformers, CPU or GPU), ``vllm`` (production GPU path), ``fake`` (tests)."""
    num_workers: int = Field(1, ge=1)
    """Number of rollout-worker actors."""
    max_batch_size: int = Field(64, ge=1)
    """Most sequences one engine decodes together."""
    sampling: SamplingConfig = SamplingConfig()
    """Sampling parameters of training rollouts."""
    record_routing: bool = True
    """Record routed experts per token for router replay (MoE models)."""
    device: Device = "auto"
    """Device of the engine (``auto``: the actor's GPU if it has one, else CPU)."""
    torch_threads: int = Field(1, ge=1)
    """torch intra-op threads inside each rollout actor (CPU engine)."""
    resources: ActorResources = ActorResources()
    """Ray resources of each rollout worker."""
    vllm: VLLMConfig = VLLMConfig()
    """vLLM engine settings (``engine: vllm``)."""


class AlgorithmConfig(Section):
    advantage: AdvantageName = "maxrl"
    """Advantage estimator over each group of rollouts (algorithms.md §3, §2)."""
    group_size: int = Field(8, ge=1)
    """Rollouts per prompt (G)."""
    delta: float = Field(0.1, gt=0.0, lt=1.0)
    """DPPO Binary-TV trust-region half-width in probability space (algorithms.md §4)."""
    tis_cap: float = Field(10.0, gt=0.0)
    """Cap C of the truncated importance weight min(p/q, C)."""
    aggregation: AggregationMode = "seq-mean-token-sum-norm"
    """Loss aggregation; the default is Dr-GRPO's (algorithms.md §2)."""
    max_len: int | None = Field(None, ge=1)
    """Constant L_max of ``seq-mean-token-sum-norm``; None uses ``rollout.sampling.max_new_tokens``."""
    router_replay: bool = True
    """Route the trainer forward with the experts recorded at rollout (R3, algorithms.md §6)."""
    filter_equal_groups: bool = False
    """Drop groups whose rewards are all equal (no learning signal) before training; counted as dropped."""


class OptimConfig(Section):
    lr: float = Field(1e-3, gt=0.0)
    """Learning rate of both optimizers (Muon's is rescaled by ``muon_adjust_lr``)."""
    weight_decay: float = Field(0.0, ge=0.0)
    """Decoupled weight decay."""
    muon: bool = True
    """Momentum-free Muon for hidden matrices and experts; AdamW for the rest. False: AdamW everywhere."""
    muon_adjust_lr: Literal["match_rms_adamw", "original"] = "match_rms_adamw"
    """Muon step scaling: Moonlight's 0.2·sqrt(max(A,B)) or Keller's sqrt(max(1, A/B))."""
    ns_steps: int = Field(5, ge=1)
    """Newton–Schulz iterations."""
    ns_dtype: Literal["auto", "bfloat16", "float32"] = "auto"
    """Newton–Schulz compute dtype; ``auto`` is bfloat16 on GPUs (as torch.optim.Muon), float32 on CPUs."""
    split_gate_up: bool = True
    """Orthogonalise the gate and up halves of fused expert ``gate_up_proj`` tensors separately."""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW betas."""
    eps: float = Field(1e-8, gt=0.0)
    """AdamW epsilon."""
    grad_clip: float = Field(1.0, gt=0.0)
    """Global gradient-norm clip."""
    warmup_steps: int = Field(0, ge=0)
    """Linear learning-rate warm-up, in optimizer steps."""


class TrainerConfig(Section):
    backend: Literal["torch", "deepspeed"] = "torch"
    """Plain torch (one device) or DeepSpeed ZeRO (several GPUs)."""
    zero_stage: Literal[2, 3] = 2
    """DeepSpeed ZeRO stage."""
    num_gpus: int = Field(0, ge=0)
    """Trainer ranks on GPUs (0: one CPU rank)."""
    device: Device = "auto"
    """Trainer device."""
    micro_batch_size: int = Field(8, ge=1)
    """Sequences per right-padded forward/backward micro-batch (with packing: sets the default
    ``micro_batch_tokens``)."""
    logprob_chunk_size: int = Field(1024, ge=1)
    """Tokens per chunk of the chunked log-softmax (logits never exist whole)."""
    logprob_impl: Literal["auto", "chunked", "cce", "liger"] = "auto"
    """Token log-prob kernel: ``chunked`` (any device; the reference), ``cce`` (cut-cross-entropy) or ``liger``
    (Liger-Kernel), fused Triton kernels on CUDA (``pip install 'zaya-rl[gpu]'``), or ``auto``: the first
    fused kernel that computes exactly the chunked log-probs for this head (fp32 head, bias), else chunked.
    The trainer logs its choice and why at start."""
    packing: Literal["auto", "always", "never"] = "auto"
    """Lay a micro-batch's sequences end to end in rows (per-sequence attention from position ids restarting at
    0; separator slots for ZAYA's CCA convolution), with the row width whose estimated compute is least.
    ``auto``: packed where the model is verified to pack exactly (llama, qwen3_moe, zaya with sdpa/eager
    attention) and packing costs less than padding (a row's masked attention spans its whole width), else
    right-padded; ``always``: packed every step, and a model that cannot be is an error at start; ``never``:
    right-padded micro-batches of ``micro_batch_size``. Torch backend only."""
    micro_batch_tokens: int | None = Field(None, ge=1)
    """Token slots of one packed micro-batch (rows x width); None: ``micro_batch_size`` x the step's longest
    sequence, the peak of the right-padded layout."""
    max_consecutive_nan: int = Field(3, ge=1)
    """Stop the run after this many consecutive non-finite losses or gradients (each one skips its step)."""
    torch_threads: int = Field(1, ge=1)
    """torch intra-op threads in the trainer actor (CPU)."""
    resources: ActorResources = ActorResources()
    """Ray resources of the trainer actor."""

    @model_validator(mode="after")
    def _kernels_and_layout(self) -> TrainerConfig:
        if self.backend == "deepspeed" and self.packing == "always":
            raise ValueError("trainer.packing: always needs trainer.backend torch (the DeepSpeed step trains right-padded "
                             "micro-batches)")
        if self.device == "cpu" and self.logprob_impl in ("cce", "liger"):
            raise ValueError(f"trainer.logprob_impl: {self.logprob_impl} is a CUDA kernel, but trainer.device is cpu")
        return self


class PipelineConfig(Section):
    mode: Literal["async", "sync"] = "async"
    """``async``: PipelineRL-style, generation never waits for training. ``sync``: generate → train → update."""
    max_lag: int = Field(1, ge=0)
    """Most optimizer steps a sample's oldest token may lag the trainer, enforced by admission control."""
    stale_policy: Literal["drop", "train"] = "drop"
    """What happens to a sample older than ``max_lag`` when it reaches the trainer (counted either way)."""
    groups_per_step: int = Field(8, ge=1)
    """Prompt groups per optimizer step (batch = groups_per_step × group_size rollouts)."""
    total_steps: int = Field(20, ge=0)
    """Optimizer steps of the run (of the stage, in a curriculum)."""
    num_scorers: int = Field(1, ge=1)
    """Scorer actors (each runs verifiers in killable worker processes)."""
    scorer_processes: int = Field(1, ge=1)
    """Verifier worker processes per scorer actor."""
    verify_timeout_s: float = Field(20.0, gt=0.0)
    """A verification running longer is killed and the sample marked ``error``."""
    scorer_resources: ActorResources = ActorResources(num_cpus=0.5)
    """Ray resources of each scorer actor."""


class AdaptiveDifficultyConfig(Section):
    window: int = Field(4, ge=1)
    """Difficulties are drawn uniformly from [max(0, h − window + 1), h] (RLVE: 4)."""
    min_prompts_before_check: int = Field(8, ge=1)
    """Accuracy at h is checked after this many × group_size rollouts at h (RLVE: 8)."""
    accuracy_to_advance: float = Field(0.9, gt=0.0, le=1.0)
    """h rises by one when the accuracy at h reaches this (RLVE: 0.9)."""


class EnvEntry(Section):
    name: str
    """Registered environment name (``zaya-rl envs list``)."""
    weight: float = Field(1.0, gt=0.0)
    """Mixture weight (normalised over the stage's environments)."""
    difficulty: int | Literal["adaptive"] = 0
    """A fixed level, or ``adaptive`` for the RLVE controller."""
    kwargs: dict[str, Any] = Field(default_factory=dict)
    """Constructor arguments of the environment."""
    canary_threshold: float | None = Field(None, gt=0.0, lt=1.0)
    """Per-environment canary threshold (code compresses more than prose)."""
    canary_patience: int | None = Field(None, ge=1)
    """Per-environment canary patience."""


class DataConfig(Section):
    environments: list[EnvEntry] = Field(default_factory=lambda: [EnvEntry(name="arithmetic")])
    """The environment mixture."""
    adaptive: AdaptiveDifficultyConfig = AdaptiveDifficultyConfig()
    """RLVE adaptive-difficulty rule (environments with ``difficulty: adaptive``)."""
    system_prompt: str | None = None
    """System message prepended to every prompt (None: none)."""

    @model_validator(mode="after")
    def _nonempty(self) -> DataConfig:
        if not self.environments:
            raise ValueError("data.environments: at least one environment is required")
        names = [e.name for e in self.environments]
        if len(set(names)) != len(names):
            raise ValueError(f"data.environments: duplicate names {sorted(n for n in names if names.count(n) > 1)}")
        return self


class SFTConfig(Section):
    enabled: bool = False
    """Supervised warm start on reference solutions before RL (ZAYA's RL starts from an SFT checkpoint)."""
    steps: int = Field(200, ge=0)
    """SFT optimizer steps."""
    batch_size: int = Field(32, ge=1)
    """Sequences per SFT step."""
    lr: float = Field(3e-3, gt=0.0)
    """SFT learning rate (AdamW)."""


class EvalConfig(Section):
    num_problems: int = Field(64, ge=0)
    """Held-out problems per environment (seeds disjoint from training) for before/after accuracy."""
    every_steps: int = Field(0, ge=0)
    """Also evaluate every N optimizer steps (0: only before and after)."""
    temperature: float = Field(0.0, ge=0.0)
    """Evaluation sampling temperature (0: greedy)."""


class CheckpointConfig(Section):
    every_steps: int = Field(10, ge=0)
    """Checkpoint every N optimizer steps (0: only at the end)."""
    keep_last: int = Field(2, ge=1)
    """Checkpoints kept on disk."""
    dir: str | None = None
    """Checkpoint folder, e.g. on a shared filesystem; None: ``<run_dir>/checkpoints``."""
    save_hf: bool = True
    """Also write HF-format weights (``save_pretrained``) loadable by transformers and vLLM."""


class LoggingConfig(Section):
    wandb_mode: Literal["offline", "online", "disabled"] = "offline"
    """wandb mode; ``online`` needs ``wandb login``. The WANDB_MODE environment variable wins."""
    project: str = "zaya_rl"
    """wandb project."""
    run_name: str | None = None
    """wandb run name (None: the run folder's name)."""
    progress_bar: bool = True
    """Show a progress bar with step, reward, lag and throughput."""
    plots: bool = True
    """Write PNG plots of the metrics at the end of the run."""
    log_samples_every: int = Field(10, ge=0)
    """Log a few decoded rollouts every N steps (0: never)."""


class RayConfig(Section):
    address: str | None = None
    """Ray cluster address; None starts (or joins, via RAY_ADDRESS) a local instance."""
    num_cpus: int | None = Field(None, ge=1)
    """CPUs of a locally started Ray instance (None: all)."""
    object_store_mb: int = Field(512, ge=64)
    """Object-store size of a locally started Ray instance."""


class StageConfig(Section):
    """One stage of a curriculum (``stages``; ``zaya_rl.curriculum``).

    A stage's config is the run config outside ``stages`` deep-merged with the stage's section overrides
    (mappings merge key by key; lists such as ``data.environments`` and plain values replace), with
    ``pipeline.total_steps = steps``. Stage k > 0 starts from stage k-1's final HF weights; the base
    ``sft`` warm start runs before stage 0 only (a later stage may set its own ``sft``). ``model``,
    ``ray``, ``logging``, ``weight_sync``, ``placement``, ``run_dir`` and ``seed`` are run-wide."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    """Stage name (letters, digits, ``_.-``): its folder is ``<run_dir>/stages/<index>_<name>``."""
    steps: int = Field(ge=1)
    """Optimizer steps of the stage."""
    rollout: dict[str, Any] = Field(default_factory=dict)
    """Overrides of ``rollout`` (e.g. ``{sampling: {max_new_tokens: 8192}}``)."""
    algorithm: dict[str, Any] = Field(default_factory=dict)
    """Overrides of ``algorithm`` (advantage, group size, loss options)."""
    optim: dict[str, Any] = Field(default_factory=dict)
    """Overrides of ``optim``."""
    trainer: dict[str, Any] = Field(default_factory=dict)
    """Overrides of ``trainer`` (e.g. a smaller micro-batch for a longer budget)."""
    pipeline: dict[str, Any] = Field(default_factory=dict)
    """Overrides of ``pipeline`` (not ``total_steps``: that is ``steps``)."""
    data: dict[str, Any] = Field(default_factory=dict)
    """Overrides of ``data``: the stage's environment mixture and adaptive-difficulty rule."""
    canary: dict[str, Any] = Field(default_factory=dict)
    """Overrides of ``canary``."""
    sft: dict[str, Any] = Field(default_factory=dict)
    """A supervised warm start before this stage (stage 0 inherits the base ``sft``)."""
    eval: dict[str, Any] = Field(default_factory=dict)
    """Overrides of ``eval`` (held-out accuracy before and after the stage)."""
    checkpoint: dict[str, Any] = Field(default_factory=dict)
    """Overrides of ``checkpoint`` (a set ``dir`` gets the stage's folder name appended)."""
    ttc: dict[str, Any] = Field(default_factory=dict)
    """Overrides of ``ttc`` (aggregation prompts in RL)."""
    behavioral: dict[str, Any] = Field(default_factory=dict)
    """Overrides of ``behavioral`` (reward model + IF checks)."""

    @model_validator(mode="before")
    @classmethod
    def _run_wide_sections(cls, data: Any) -> Any:
        run_wide = ("model", "ray", "logging", "weight_sync", "placement", "run_dir", "seed", "stages")
        if isinstance(data, dict):
            for key in run_wide:
                if key in data:
                    raise ValueError(f"{key} is run-wide and cannot change per stage (set it outside stages)")
            if isinstance(data.get("pipeline"), dict) and "total_steps" in data["pipeline"]:
                raise ValueError("pipeline.total_steps: a stage's length is its `steps`")
        return data

    @model_serializer(mode="wrap")
    def _without_empty_sections(self, handler: Any) -> dict[str, Any]:
        # a dumped config.yaml lists only what each stage overrides (an absent section loads back as {})
        return {k: v for k, v in handler(self).items() if v != {}}


class RunConfig(Section):
    run_dir: str = "runs/default"
    """Output folder: checkpoints, metrics.jsonl, plots, summary.json."""
    seed: int = 0
    """Global seed (sampling, data order)."""
    model: ModelConfig = ModelConfig()
    rollout: RolloutConfig = RolloutConfig()
    algorithm: AlgorithmConfig = AlgorithmConfig()
    optim: OptimConfig = OptimConfig()
    trainer: TrainerConfig = TrainerConfig()
    pipeline: PipelineConfig = PipelineConfig()
    data: DataConfig = DataConfig()
    canary: CanaryConfig = CanaryConfig()
    sft: SFTConfig = SFTConfig()
    eval: EvalConfig = EvalConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    logging: LoggingConfig = LoggingConfig()
    ray: RayConfig = RayConfig()
    weight_sync: WeightSyncConfig = WeightSyncConfig()
    placement: PlacementConfig = PlacementConfig()
    ttc: TTCConfig = TTCConfig()
    behavioral: BehavioralConfig = BehavioralConfig()
    stages: list[StageConfig] = Field(default_factory=list)
    """The curriculum (``zaya_rl.curriculum``): stages run in order, each from the previous stage's final
    weights. Empty: one run of ``pipeline.total_steps``. See ``StageConfig`` for how a stage is merged."""

    @model_validator(mode="after")
    def _cross_checks(self) -> RunConfig:
        L = self.algorithm.max_len
        if L is not None and L < self.rollout.sampling.max_new_tokens:
            raise ValueError(
                f"algorithm.max_len ({L}) must be >= rollout.sampling.max_new_tokens "
                f"({self.rollout.sampling.max_new_tokens}): L_max is the generation budget"
            )
        if self.trainer.backend == "deepspeed" and self.trainer.num_gpus < 1:
            raise ValueError("trainer.num_gpus: the deepspeed backend needs at least one GPU")
        if self.trainer.backend == "deepspeed" and self.sft.enabled:
            raise ValueError("sft.enabled: the SFT warm start runs on the torch trainer backend only; "
                             "run SFT first, then RL from its checkpoint (model.path) with trainer.backend=deepspeed")
        self._check_weight_sync()
        self._check_placement()
        self._check_ttc()
        if self.stages:
            from zaya_rl.curriculum.stages import validate_stages  # imports only config code

            validate_stages(self)
        return self

    def _check_ttc(self) -> None:
        if self.ttc.fraction > 0 and self.ttc.tails_per_prompt > self.algorithm.group_size:
            raise ValueError(
                f"ttc.tails_per_prompt ({self.ttc.tails_per_prompt}) must be <= algorithm.group_size "
                f"({self.algorithm.group_size}): an aggregation prompt's tails come from one group's completions"
            )

    def _check_weight_sync(self) -> None:
        t = self.weight_sync.transport
        if t in ("nccl", "ipc") and self.rollout.engine != "vllm":
            raise ValueError(f"weight_sync.transport={t} needs rollout.engine=vllm (got {self.rollout.engine})")
        if t in ("nccl", "ipc") and self.trainer.device == "cpu":
            raise ValueError(f"weight_sync.transport={t} needs a GPU trainer (trainer.device is cpu)")
        if t == "ipc" and self.trainer.backend == "deepspeed" and self.trainer.zero_stage == 3:
            raise ValueError("weight_sync.transport=ipc cannot hand out ZeRO-3 gathered parameters (freed after "
                             "each gather); use nccl or file with trainer.zero_stage=3")
        if t == "ipc" and self.placement.mode == "disaggregated":
            raise ValueError("weight_sync.transport=ipc needs trainer and rollout on one GPU "
                             "(placement.mode=colocated); use nccl for disaggregated placement")

    def _check_placement(self) -> None:
        mode = self.placement.mode
        if mode == "ray":
            return
        for name, res in (("rollout", self.rollout.resources), ("trainer", self.trainer.resources)):
            if res.resources:  # placement-group bundles hold only CPUs and GPUs
                raise ValueError(f"placement.mode={mode}: {name}.resources.resources {res.resources} cannot be "
                                 "used inside a placement group; use placement.mode=ray with custom resources")
        r, t = self.rollout.resources.num_gpus, self.trainer.resources.num_gpus
        if r <= 0 or t <= 0:
            raise ValueError(f"placement.mode={mode}: rollout.resources.num_gpus and trainer.resources.num_gpus "
                             f"must be > 0 (got {r} and {t})")
        if mode == "colocated" and r + t > 1.0 + 1e-9:
            raise ValueError(f"placement.mode=colocated: rollout.resources.num_gpus + trainer.resources.num_gpus "
                             f"must be <= 1 to share a GPU (got {r} + {t})")
        if mode == "disaggregated" and (r > 1 or t > 1):
            raise ValueError("placement.mode=disaggregated: one bundle is one GPU; rollout.resources.num_gpus and "
                             f"trainer.resources.num_gpus must be <= 1 (got {r} and {t})")

    @property
    def loss_max_len(self) -> int:
        """The Dr-GRPO constant L_max."""
        return self.algorithm.max_len or self.rollout.sampling.max_new_tokens

    @property
    def batch_size(self) -> int:
        """Rollouts per optimizer step."""
        return self.pipeline.groups_per_step * self.algorithm.group_size
