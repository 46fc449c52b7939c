"""The scoring configuration: every knob, one docstring each, checked at the boundary."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from selectit.errors import ConfigError
from selectit.prompts import LAYOUTS, TEMPLATES, labels_for_scale
from selectit.reflection import MODES, PROMPT_WEIGHTS, RATINGS

OVERLONG = ("truncate", "error")
# The published method (SPEC 1), as ``--paper`` sets it: the plain template, the argmax token score, equal
# prompt weights, no calibration and no likelihood term (prompts stay the packaged ones unless --prompts).
PAPER = {"template": "plain", "rating": "argmax", "calibrate": False, "prompt_weights": "equal",
         "likelihood_weight": 0.0}


@dataclass(frozen=True, kw_only=True)
class ScoringConfig:
    models: tuple[str | None, ...] = (None,)
    """Models to rate with (hub id, local folder or .gguf file); None is the embedded SmolLM2-135M."""
    backend: str = "hf"
    """Backend name: 'hf' (transformers), 'llamacpp' (GGUF as shipped), 'vllm' (vLLM on GPUs) or 'fake'
    (deterministic, for tests)."""
    prompts_file: str | None = None
    """File with one rating prompt per line; None uses the packaged default prompts."""
    num_prompts: int = 5
    """P: how many rating prompts (the first P of the file)."""
    scale: int = 5
    """S: ratings are 1..S (2..9)."""
    alpha: float = 0.2
    """Weight of the prompts' disagreement (std) in the sentence-level score; >= 0."""
    mode: str = "paper"
    """'paper' (the published formulas) or 'reference' (the authors' scripts: softmax renormalisation
    and their hard-coded 7/20, 13/20, 70/90 model weights)."""
    template: str = "auto"
    """'plain': the published template, byte for byte; 'chat': the model's chat template around it;
    'auto' (default): 'chat' for a model that has a chat template, 'plain' for one that has none."""
    rating: str = "expected"
    """Token level: 'expected' (default: the expected rating sum_k k p'_k, in [1, S]) or 'argmax'
    (the paper: the top rating weighted by its margin over the others)."""
    calibrate: bool = False
    """Divide each prompt's rating distribution by the model's distribution on content-free inputs
    ("N/A", "[MASK]", "...": Zhao et al., ICML 2021), removing its bias towards some ratings.
    Costs 3 extra prompts per rating prompt per model, not per record."""
    prompt_weights: str = "equal"
    """Sentence level: 'equal' (the paper) or 'mass' (each prompt's token score weighted by the label
    mass the model put on the ratings for that record, in the mean and the std)."""
    likelihood_weight: float = 1.0
    """Sentence level: add this many rating points per nat of the model's own likelihood evidence
    for the response (selectit.reflection.likelihood_scores: fluency, the response's mean
    log-probability given the instruction, plus relevance, how much the instruction raises it over a
    blank instruction). 0 is the paper's method; 1 (default) measured best in bench/discrimination.py.
    Costs 2 forward passes per record per model (the response's losses in 2 contexts) on top of the P
    rating prompts; needs a backend with response losses (every built-in backend has them)."""
    layout: str = "prompt-first"
    """'prompt-first': the published order (rating prompt, then the record). 'record-first': the record,
    then the rating prompt, so one record's P prompts share its tokens (P times less record compute;
    it changes what the model reads, so scores differ from the paper's)."""
    batch_size: int = 16
    """Most prompts per forward pass."""
    batch_tokens: int | None = None
    """Most padded tokens per forward pass (rows x longest row); None: only batch_size limits."""
    prefix_cache: bool = True
    """Compute the tokens that a group of prompts shares (the rating prompt, or the record in
    record-first) once and reuse their keys/values. Same scores, less work."""
    chunk_size: int = 10_000
    """Records read, planned and scored together (a shard): memory holds one chunk's prompts, never
    the whole file; batches are planned within a chunk. Larger chunks sort more prompts by length."""
    max_length: int | None = None
    """Longest prompt in tokens; None uses the model's context size."""
    overlong: str = "truncate"
    """What to do with a prompt over max_length: 'truncate' (cut the response's end, then the
    instruction's; the rating prompt and template ending stay whole; counted and flagged) or 'error'."""
    dtype: str = "float32"
    """Model weights and activations: float32 (exact), bfloat16 or float16."""
    device: str = "auto"
    """'auto' (cuda when available), 'cpu', 'cuda', 'cuda:1', ..."""
    tensor_parallel_size: int = 1
    """GPUs that one model is split over (vllm backend only), for models that do not fit one GPU."""
    model_weights: tuple[float, ...] | None = None
    """Override the model-level weights (one per model; normalised to sum 1)."""
    trust_remote_code: bool = False
    """Allow model repositories to run their own code when loading (off by default)."""
    allow_pickle: bool = False
    """Allow PyTorch pickle (.bin) weights, which can run code when loaded; by default only
    safetensors and GGUF weights load."""

    method: str = "selectit"
    """Selection method: 'selectit' (the full method), a single level ('token', 'sentence', 'model') or a
    baseline ('random', 'length', 'perplexity', 'ifd'); see selectit.baselines."""
    seed: int = 0
    """Seed of the 'random' method."""

    def __post_init__(self) -> None:
        from selectit.baselines import METHODS

        if self.method not in METHODS:
            raise ConfigError(f"--method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not self.models:
            raise ConfigError("need at least one model")
        if self.mode not in MODES:
            raise ConfigError(f"--mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.template not in TEMPLATES:
            raise ConfigError(f"--template must be one of {', '.join(TEMPLATES)}, got {self.template!r}")
        if self.rating not in RATINGS:
            raise ConfigError(f"--rating must be one of {', '.join(RATINGS)}, got {self.rating!r}")
        if self.prompt_weights not in PROMPT_WEIGHTS:
            raise ConfigError(f"--prompt-weights must be one of {', '.join(PROMPT_WEIGHTS)}, got {self.prompt_weights!r}")
        if not (isinstance(self.likelihood_weight, (int, float)) and 0 <= self.likelihood_weight < float("inf")):
            raise ConfigError(f"--likelihood-weight must be a number >= 0, got {self.likelihood_weight!r}")
        if self.mode == "reference":
            differ = [k for k, v in PAPER.items() if getattr(self, k) != v]
            if differ:
                raise ConfigError(
                    "--mode reference reproduces the authors' scripts, which rate with the published method; "
                    f"it cannot be combined with {', '.join(f'{k}={getattr(self, k)!r}' for k in differ)} "
                    "(give it the published settings: ScoringConfig(**selectit.config.PAPER, mode='reference'))")
        if self.layout not in LAYOUTS:
            raise ConfigError(f"--layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if self.batch_tokens is not None and self.batch_tokens < 1:
            raise ConfigError(f"--batch-tokens must be >= 1, got {self.batch_tokens}")
        if self.overlong not in OVERLONG:
            raise ConfigError(f"--overlong must be one of {', '.join(OVERLONG)}, got {self.overlong!r}")
        labels_for_scale(self.scale)
        if not self.alpha >= 0:
            raise ConfigError(f"--alpha must be >= 0, got {self.alpha}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.max_length is not None and self.max_length < 16:
            raise ConfigError(f"--max-length must be >= 16 tokens, got {self.max_length}")
        if self.tensor_parallel_size < 1:
            raise ConfigError(f"--tensor-parallel-size must be >= 1, got {self.tensor_parallel_size}")
        if self.chunk_size < 1:
            raise ConfigError(f"--chunk-size must be >= 1, got {self.chunk_size}")
        if self.num_prompts < 1:
            raise ConfigError(f"--num-prompts must be >= 1, got {self.num_prompts}")
        if self.model_weights is not None:
            if len(self.model_weights) != len(self.models):
                raise ConfigError(
                    f"--model-weights gives {len(self.model_weights)} weight(s) for {len(self.models)} model(s)"
                )
            if any(not w > 0 for w in self.model_weights):
                raise ConfigError(f"--model-weights must all be > 0, got {list(self.model_weights)}")

    def to_dict(self) -> dict:
        return asdict(self)
