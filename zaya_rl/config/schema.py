"""The one config tree of a zaya_rl run.

Every field is documented by the docstring under it; choices are ``Literal``; numbers carry bounds.
Cross-field checks live in ``RunConfig`` and raise errors naming the dotted field.
``docs/configuration.md`` is generated from this module (``zaya-rl config docs``), so it cannot drift.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from zaya_rl.config.base import ActorResources, Device, Section
from zaya_rl.config.gpu import PlacementConfig, VLLMConfig, WeightSyncConfig
from zaya_rl.config.recipe import BehavioralConfig, RewardModelSection, RSAConfig, TTCConfig
from zaya_rl.config.stages import StageConfig, check_stage_names, located, stage_dict
from zaya_rl.paths import checkpoint_root, step_dir

__all__ = [  # the sections defined in gpu.py, recipe.py and stages.py belong to this tree too
    "BehavioralConfig", "PlacementConfig", "RewardModelSection", "RSAConfig", "StageConfig", "TTCConfig",
    "VLLMConfig", "WeightSyncConfig",
]

AdvantageName = Literal["maxrl", "dr_grpo", "grpo"]
NonBinaryAdvantage = Literal["dr_grpo", "maxrl", "error"]
Level = Annotated[int, Field(ge=0)]
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
    """Sampling of training rollouts. Only options under which the trainer's log-prob, log_softmax(z / T)[y],
    is the exact log-prob of the distribution the token was drawn from: the importance weights min(p/q, C)
    and the DPPO mask (algorithms.md §4) compare the two token by token."""

    temperature: float = 1.0
    """Sampling temperature, > 0 (greedy decoding is for evaluation: ``eval.temperature: 0``). Trainer log-probs
    are computed at the same temperature (docs/algorithms.md §5)."""
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    """Must be 1: nucleus sampling renormalises the behaviour log-probs over the kept tokens while the trainer's
    cover the whole softmax, which would skew every importance ratio (docs/algorithms.md §5)."""
    max_new_tokens: int = Field(64, ge=1)
    """Generation budget per rollout, in tokens."""

    @field_validator("temperature")
    @classmethod
    def _not_greedy(cls, v: float) -> float:
        if not v > 0:
            raise ValueError("training rollouts need temperature > 0: greedy decoding (0) has no sampling "
                             "distribution for the importance weights and the DPPO mask, and the trainer's "
                             "log-probs divide by T (eval.temperature: 0 is greedy evaluation)")
        return v

    @field_validator("top_p")
    @classmethod
    def _no_nucleus(cls, v: float) -> float:
        if v < 1.0:
            raise ValueError("top_p < 1 is not supported for training rollouts: the engine's behaviour log-probs "
                             "are renormalised over the nucleus while the trainer's are over the full softmax, so "
                             "on-policy log p − log q would be log(nucleus mass) on every token (≈ −0.69 at top_p "
                             "0.5), and the importance weights and the DPPO mask would be wrong; use top_p: 1 (lower "
                             "rollout.sampling.temperature to sharpen sampling)")
        return v


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
    """Record routed experts per token for router replay (MoE models); ``algorithm.router_replay`` needs it."""
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
    nonbinary_advantage: NonBinaryAdvantage = "dr_grpo"
    """With ``advantage: maxrl``: the estimator of a group whose rewards are not all 0 or 1 (code ``fraction``,
    IFEval fractions, reward-model scores). MaxRL is derived for pass/fail rewards (algorithms.md §3, "Scope
    limits"); ``dr_grpo`` (A = r − mean r) is defined for any reward; ``maxrl`` applies (r − μ)/μ anyway;
    ``error`` stops the run at the first such group. Logged as ``advantage/nonbinary_group_frac``."""
    router_replay: bool = True
    """Route the trainer forward with the experts recorded at rollout (R3, algorithms.md §6), per sample: a
    sample without recorded routes routes natively. Needs ``rollout.record_routing`` and an MoE model."""
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
    logprob_grad_filter: bool = False
    """With cut-cross-entropy (``logprob_impl: cce``, or ``auto`` where it picks cce): its gradient filtering,
    which skips the backward of every vocabulary block whose entries |softmax − onehot| all lie below bf16's
    eps/32 = 2⁻¹² (cut-cross-entropy's own default; Wijmans et al., arXiv 2411.09009, "gradient filtering").
    Log-probs are unchanged; the head's gradients lose those entries. Measured on an H100 (2026-12-06, H 2048,
    V 262,272, 8,192 tokens): forward+backward 0.047 s against 0.153 s unfiltered and 0.084 s for the naive
    full-logits head (``benchmarks/logprobs_memory.py``). Off: exact gradients. On with any other kernel, or where
    ``auto`` cannot pick cce, the trainer stops at start with the reason."""
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
    compile: bool = False
    """torch.compile each decoder layer on its own (``zaya_rl.trainer.compile``: in place, parameter names
    unchanged; Inductor fuses norms, RoPE and activations). The first step pays the compilation (on 2 CPU cores
    ~65 s for tiny-qwen3moe, ~10 s with a warm cache) and a new micro-batch shape can recompile. Torch backend
    only."""
    matmul_precision: Literal["highest", "high", "medium"] = "highest"
    """``torch.set_float32_matmul_precision`` in the trainer process. ``high`` lets float32 matrix products run
    on TF32 tensor cores on NVIDIA GPUs since Ampere (products of 10-bit-mantissa inputs, float32 accumulation;
    the weights, gradients and optimizer stay float32), ``medium`` on bfloat16 ones; ``highest`` keeps full
    float32 products. Meant for a float32 trainer (``model.dtype: float32``) on a GPU. torch maps the same setting
    onto oneDNN's CPU matmuls (``torch.backends.mkldnn.matmul.fp32_precision``: ``high`` → tf32, ``medium`` →
    bf16, torch 2.13), so on a CPU with bfloat16 instructions ``medium`` can lower the products there too."""
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
        if self.backend == "deepspeed" and self.compile:
            raise ValueError("trainer.compile: true needs trainer.backend torch (DeepSpeed wraps the model in its "
                             "own engine; its compile path is not wired here)")
        if self.device == "cpu" and self.logprob_impl in ("cce", "liger"):
            raise ValueError(f"trainer.logprob_impl: {self.logprob_impl} is a CUDA kernel, but trainer.device is cpu")
        if self.logprob_grad_filter and (self.logprob_impl in ("chunked", "liger") or self.device == "cpu"):
            raise ValueError("trainer.logprob_grad_filter: true is cut-cross-entropy's gradient filter (CUDA), but "
                             f"trainer.logprob_impl is {self.logprob_impl} and trainer.device is {self.device}")
        return self


class PipelineConfig(Section):
    mode: Literal["async", "sync"] = "async"
    """``async``: PipelineRL-style, generation never waits for training. ``sync``: generate → train → update."""
    max_lag: int = Field(1, ge=0)
    """Most optimizer steps a sample's oldest token may lag the trainer, enforced by admission control."""
    stale_policy: Literal["wait", "train", "drop"] = "wait"
    """Which groups a step trains. ``wait``: the next ``groups_per_step`` in admission order (a step waits for
    its slowest group): lag never exceeds ``max_lag`` and nothing is discarded. ``train``/``drop``: groups in
    the order they finish (the trainer never waits); one older than ``max_lag`` is trained anyway (truncated
    IS weights, ``samples/stale_trained``) or dropped (``stale``; biases training toward short answers)."""
    groups_per_step: int = Field(8, ge=1)
    """Prompt groups per optimizer step (batch = groups_per_step × group_size rollouts)."""
    total_steps: int = Field(20, ge=0)
    """Optimizer steps of the run (of the stage, in a curriculum)."""
    rl_time_limit_s: float | None = Field(None, gt=0.0)
    """Wall-clock budget of the RL loop (from its first step, evaluations not counted): when it runs out, no
    new step starts, the step in flight finishes, and the run ends as a finished one (evaluation after RL,
    checkpoint, ``rl_time_limit_reached: true`` in the summary); rollouts still generating are booked as dropped
    (``interrupted``). For time-boxed runs (a lent GPU, CI); None: no limit."""
    num_scorers: int = Field(1, ge=1)
    """Scorer actors (each runs verifiers in killable worker processes)."""
    scorer_processes: int = Field(1, ge=1)
    """Verifier worker processes per scorer actor."""
    verify_timeout_s: float = Field(20.0, gt=0.0)
    """A verification running longer is killed and the sample marked ``error``."""
    generate_timeout_s: float = Field(10.0, gt=0.0)
    """A problem that takes longer to generate is abandoned (its worker killed): an adaptive environment stops
    drawing that level and above, another draw takes its place; a fixed level counts against
    ``max_failed_groups``."""
    scorer_resources: ActorResources = ActorResources(num_cpus=0.5)
    """Ray resources of each scorer actor."""
    max_failed_groups: int = Field(5, ge=1)
    """Stop the run when this many training groups in a row of one environment failed entirely (every
    rollout's verification raised or timed out, or the problem could not be generated)."""


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
    """Held-out problems per environment and level (seeds disjoint from training) for before/after accuracy."""
    difficulty: Literal["train_levels"] | Level | list[Level] | None = None
    """Levels evaluated, accuracy reported per level: None, each environment's fixed training level (an adaptive
    one's lowest; before and after see the same problems); a level or a list of levels for every environment;
    ``train_levels``, the levels training draws from when the evaluation runs (an adaptive environment's window
    below its current top level h: after RL, the difficulty training reached)."""
    every_steps: int = Field(0, ge=0)
    """Also evaluate every N optimizer steps (0: only before and after)."""
    temperature: float = Field(0.0, ge=0.0)
    """Evaluation sampling temperature (0: greedy)."""
    engine_dtype: Literal["model", "rollout"] = "model"
    """Precision of the vLLM engine that ``zaya-rl eval`` starts for a checkpoint or a config's model (weights
    read from disk): ``model``, the trainer's ``model.dtype``, so the weights evaluated are the ones trained;
    ``rollout``, the rollout engine's (``rollout.vllm.engine_kwargs.dtype`` where set; less memory). Loading a
    float32 checkpoint into a bfloat16 engine rounds every weight to nearest: after 19 RL steps of SmolLM2 at lr
    3e-5 that put 97.2% of the weights back on their start values and cut held-out accuracy from 0.422 to 0.320,
    38% of the gain (``benchmarks/results/bf16_rounding_cpu.md``). Evaluations inside ``zaya-rl train`` run on
    the rollout workers, whose weights arrive as ``weight_sync`` sends them (stochastically rounded by default)."""

    @model_validator(mode="after")
    def _levels(self) -> EvalConfig:
        d = self.difficulty
        if isinstance(d, list) and (not d or len(set(d)) < len(d)):
            raise ValueError(f"eval.difficulty: a list of distinct levels is required, got {self.difficulty}")
        return self


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
    collapse_window: int = Field(5, ge=1)
    """Warn (progress bar, log, summary.json ``warnings``) when a collapse condition holds this many
    optimizer steps in a row: every verified rollout scored 0, or outputs collapsed (below)."""
    collapse_distinct_per_group: float = Field(0.5, ge=0.0)
    """Output collapse: distinct response texts of a step's rollouts per group (prompt) at most this."""


class RayConfig(Section):
    address: str | None = None
    """Ray cluster address; None starts (or joins, via RAY_ADDRESS) a local instance."""
    num_cpus: int | None = Field(None, ge=1)
    """CPUs of a locally started Ray instance (None: all)."""
    object_store_mb: int = Field(512, ge=64)
    """Object-store size of a locally started Ray instance."""


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
    weights. Empty: one run of ``pipeline.total_steps``. See ``StageConfig`` (``zaya_rl.config.stages``) for
    how a stage is merged."""

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
        self._check_replay()
        self._check_nonbinary()
        if self.stages:  # the whole chain validates at load: a typo in the last stage fails at once
            check_stage_names(self.stages)
            self.stage_configs()
        return self

    def stage_configs(self) -> list[RunConfig]:
        """Every stage's complete, validated config, in order (``zaya_rl.config.stages``).

        Raises ``ValidationError`` located at ``("stages", k, ...)``.
        """
        run, out = self.model_dump(mode="json", exclude={"stages"}), []
        for k, stage in enumerate(self.stages):
            try:
                out.append(RunConfig.model_validate(stage_dict(run, stage, k, out[-1].final_model_dir if out else None)))
            except ValidationError as e:
                raise located(e, k, stage.name) from None
        return out

    def _check_ttc(self) -> None:
        if self.ttc.fraction > 0 and self.ttc.tails_per_prompt > self.algorithm.group_size:
            raise ValueError(
                f"ttc.tails_per_prompt ({self.ttc.tails_per_prompt}) must be <= algorithm.group_size "
                f"({self.algorithm.group_size}): an aggregation prompt's tails come from one group's completions"
            )

    def _check_replay(self) -> None:
        if self.algorithm.router_replay and not self.rollout.record_routing:
            raise ValueError("algorithm.router_replay=true needs rollout.record_routing=true (the routes to replay "
                             "are recorded at rollout); set both to false to train without router replay")

    def _check_nonbinary(self) -> None:
        a, b = self.algorithm, self.behavioral
        if a.advantage != "maxrl" or not b.enabled:
            return
        if a.nonbinary_advantage == "error":
            raise ValueError("algorithm.nonbinary_advantage=error with behavioral.enabled: reward-model rewards "
                             "are not binary, so the first group would stop the run; use dr_grpo")
        if a.nonbinary_advantage == "maxrl" and b.reward_model.transform == "group_rank":
            raise ValueError("algorithm.nonbinary_advantage=maxrl with behavioral.reward_model.transform=group_rank:"
                             " ranks have group mean 1/2 whatever the answers, so MaxRL's 1/μ weight carries no "
                             "pass-rate information (with behavioral.if_weight=0 it is exactly 2× Dr-GRPO); use "
                             "nonbinary_advantage=dr_grpo (or another transform)")

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
    def checkpoint_root(self) -> Path:
        """The folder of the run's step checkpoints: ``checkpoint.dir``, else ``<run_dir>/checkpoints``."""
        return checkpoint_root(self.run_dir, self.checkpoint.dir)

    @property
    def final_model_dir(self) -> Path:
        """The HF weights the completed run ends with (its last step checkpoint is always kept)."""
        return step_dir(self.checkpoint_root, self.pipeline.total_steps) / "model"

    @property
    def loss_max_len(self) -> int:
        """The Dr-GRPO constant L_max."""
        return self.algorithm.max_len or self.rollout.sampling.max_new_tokens

    @property
    def weight_sync_dtype(self) -> str:
        """The dtype weights travel to the rollout engines in (``weight_sync.dtype``, ``auto`` resolved)."""
        if self.weight_sync.dtype != "auto":
            return self.weight_sync.dtype
        named = {"bfloat16": "bfloat16", "float16": "float16", "half": "float16", "float32": "float32",
                 "float": "float32"}
        engine = self.rollout.vllm.engine_kwargs.get("dtype") if self.rollout.engine == "vllm" else None
        return named.get(str(engine), self.model.dtype)

    @property
    def batch_size(self) -> int:
        """Rollouts per optimizer step."""
        return self.pipeline.groups_per_step * self.algorithm.group_size
