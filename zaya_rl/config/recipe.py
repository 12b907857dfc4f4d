"""Config sections of the recipe's later stages: test-time compute (Markovian RSA, TTC prompts in RL) and
the behavioural stage (reward model + instruction-following checks).

Part of the one config tree (``zaya_rl.config.schema.RunConfig`` holds them as ``rsa``, ``ttc`` and
``behavioral``); split out only to keep files small.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from zaya_rl.config.base import ActorResources, Device, Section


class RSAConfig(Section):
    """Markovian Recursive Self-Aggregation (research/algorithms.md §8.2; ``zaya_rl.rsa``)."""

    num_candidates: int = Field(16, ge=1)
    """N: candidates generated in every round (the population)."""
    budget: int = Field(40000, ge=1)
    """β: generation budget of every candidate, initial and aggregation rounds alike, in tokens."""
    tail_tokens: int = Field(4000, ge=1)
    """τ: tokens kept from the end of each candidate's generated text to feed the next round."""
    tails_per_prompt: int = Field(4, ge=1)
    """C: tails per aggregation prompt, drawn without replacement from the previous round's candidates."""
    aggregation_rounds: int = Field(2, ge=0)
    """Rounds of aggregation after the initial generation. ZAYA1's "T = 2" is read as 2 aggregation rounds;
    the RSA harness's T counts the initial round too, so harness T = aggregation_rounds + 1."""
    temperature: float = Field(1.0, ge=0.0)
    """Sampling temperature of every round."""
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    """Nucleus sampling mass of every round."""
    answer_format: str | None = None
    """How the aggregation prompt asks for the final answer, e.g. ``in \\boxed{}`` (None: "in the format the
    problem asks for"; the problem text is repeated in the prompt)."""

    @model_validator(mode="after")
    def _tails_fit(self) -> RSAConfig:
        if self.tails_per_prompt > self.num_candidates:
            raise ValueError(
                f"rsa.tails_per_prompt ({self.tails_per_prompt}) must be <= rsa.num_candidates "
                f"({self.num_candidates}): the tails of one prompt are drawn without replacement"
            )
        return self


class TTCConfig(Section):
    """Test-time-compute (aggregation) prompts in RL (research/algorithms.md §8.2, "RL for both modes";
    ``zaya_rl.pipeline.ttc``). A fraction of admitted groups are Markovian-RSA aggregation prompts built from
    C τ-token tails of the policy's own recent completions of the same problem; they are scored by the same
    verifier against the same ground truth and form their own groups (their own advantages)."""

    fraction: float = Field(0.0, ge=0.0, le=1.0)
    """Probability that an admitted group is an aggregation group, when the tail cache holds a problem with
    at least ``tails_per_prompt`` usable completions (otherwise a normal group is admitted, so the realised
    share, ``ttc/group_frac``, starts at 0 in each stage and stays below this). 0: TTC off."""
    tails_per_prompt: int = Field(4, ge=1)
    """C: tails per aggregation prompt, drawn without replacement from one problem's cached completions."""
    tail_tokens: int = Field(4000, ge=1)
    """τ: tokens kept from the end of each completion (ZAYA1: 4K)."""
    answer_format: str | None = None
    """How the aggregation prompt asks for the final answer, e.g. ``in \\boxed{}`` (None: "in the format the
    problem asks for")."""
    cache_problems: int = Field(256, ge=1)
    """Problems whose recent completions are kept; the least recently updated one is evicted first."""
    completions_per_problem: int = Field(16, ge=1)
    """Most recent completions kept per problem (older ones fall out)."""
    uses_per_problem: int = Field(1, ge=1)
    """Aggregation groups built from one problem's cached completions before it leaves the cache (each
    draws its own C tails); 1 keeps every aggregation prompt on the freshest tails."""

    @model_validator(mode="after")
    def _cache_holds_c(self) -> TTCConfig:
        if self.completions_per_problem < self.tails_per_prompt:
            raise ValueError(
                f"ttc.completions_per_problem ({self.completions_per_problem}) must be >= ttc.tails_per_prompt "
                f"({self.tails_per_prompt}): the C tails of a prompt come from one problem's cached completions"
            )
        return self


class RewardModelSection(Section):
    """The reward model of the behavioural stage (``rewards.reward_model``), run as its own Ray actor."""

    path: str | None = None
    """Local folder of a sequence-classification RM and its tokenizer (e.g. a Skywork-Reward-V2 download)."""
    build_tiny: bool = False
    """Build a tiny randomly initialised RM into ``<run_dir>/tiny_reward_model`` when the actor starts
    (CPU demos and tests; nothing is downloaded). Used only when ``path`` is None."""
    max_length: int = Field(4096, ge=2)
    """Tokens per (prompt, response) pair; longer pairs lose their beginning."""
    batch_size: int = Field(8, ge=1)
    """Pairs per RM forward pass; the driver also flushes its batching queue at this many pairs."""
    max_wait_s: float = Field(0.02, ge=0.0, le=5.0)
    """Longest a pair waits in the driver's queue for other groups' pairs before the batch is sent."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Parameter dtype of the RM."""
    device: Device = "auto"
    """RM device inside its actor (``auto``: the actor's GPU if it has one, else CPU)."""
    transform: Literal["sigmoid", "group_rank", "group_minmax"] = "sigmoid"
    """Raw score → [0, 1] (``rewards.rm_transforms``); ``group_*`` transforms act within each group."""
    temperature: float = Field(1.0, gt=0.0)
    """Sigmoid temperature of the ``sigmoid`` transform."""
    shift: float = 0.0
    """Raw score mapped to 0.5 by the ``sigmoid`` transform (e.g. the RM's median score)."""
    resources: ActorResources = ActorResources()
    """Ray resources of the RM actor (``num_gpus: 1`` on a GPU cluster; never the trainer's GPU)."""


class BehavioralConfig(Section):
    """Behavioural RL (``zaya_rl.pipeline.behavioral``): each response's reward is the weighted mean of the
    reward model's transformed score and the environment verifier's reward (IFEval checks for ``ifeval``),
    ``(w_rm·r_rm + w_if·r_if)/(w_rm + w_if)`` in [0, 1]. Accuracy stays the verifier's."""

    enabled: bool = False
    """Score training groups with the reward model as well (evaluation groups keep the verifier only)."""
    rm_weight: float = Field(1.0, ge=0.0)
    """Weight of the RM reward."""
    if_weight: float = Field(1.0, ge=0.0)
    """Weight of the verifier (instruction-following) reward."""
    reward_model: RewardModelSection = RewardModelSection()
    """The reward model and its actor."""

    @model_validator(mode="after")
    def _usable(self) -> BehavioralConfig:
        if self.rm_weight + self.if_weight == 0:
            raise ValueError("behavioral.rm_weight and behavioral.if_weight must not both be 0")
        if self.enabled and self.reward_model.path is None and not self.reward_model.build_tiny:
            raise ValueError("behavioral.reward_model.path: required when behavioral.enabled (or set "
                             "behavioral.reward_model.build_tiny=true for a tiny local RM)")
        return self
