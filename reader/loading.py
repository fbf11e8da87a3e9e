"""Loading a question-answering model and its tokenizer, and placing the model on a device."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spanqa import defaults
from spanqa.devices import check_device, resolve_device
from spanqa.errors import ConfigError, ModelLoadError
from spanqa.onnx_cache import model_source_directory
from spanqa.reader.fast_mode import OnnxInt8Runner, check_fast_mode_available
from spanqa.reader.forward import PaddedRunner, cpu_batch_tokens, cuda_batch_tokens, packed_runner_if_equivalent
from spanqa.settings import flag

# What the reader can build for a window; a model gets the subset its tokenizer names and its
# forward() declares (DistilBERT, for one, takes no token_type_ids).
BUILDABLE_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class LoadedQAModel:
    """A fast tokenizer and a question-answering model in eval mode on `device`, ready to read.

    `runner(batch)` gives a `WindowBatch`'s start and end logits (see `spanqa.reader.forward`):
    the packed DistilBERT forward, the model's own padded forward, or (fast mode) ONNX Runtime.
    """

    tokenizer: Any  # a transformers fast tokenizer
    model: Any  # a torch.nn.Module whose output has .start_logits and .end_logits; None: fast mode from the cache
    device: Any  # torch.device
    input_names: tuple[str, ...]
    word_ids_available: bool
    runner: Any = None  # callable WindowBatch -> (start_logits, end_logits); None: the padded forward
    fast: bool = False  # whether `runner` is the int8 ONNX Runtime fast mode
    config: Any = None  # the model's transformers config (positions, vocabulary size)

    def logits(self, batch):
        """Start and end logits (float64, the batch's (B, L) shape) of a batch of windows."""
        runner = self.runner or PaddedRunner(self.model, self.device, self.input_names)
        return runner(batch)

    @property
    def forward_cost_tokens(self) -> int | None:
        """What one more forward pass costs, in padded tokens' worth of compute, where batches should
        be cut to save padding (the padded forward on a CPU); None: as few, full batches as possible
        (a GPU, where a pass costs more than padding, and the packed and one-window runners, which
        compute no padding in their matrix products)."""
        padded = self.runner is None or getattr(self.runner, "kind", None) == "padded"
        if self.device.type != "cpu" or not padded:
            return None
        return defaults.READER_CPU_FORWARD_COST_TOKENS

    def batch_tokens(self, max_seq_length: int) -> int:
        """The default token budget of one forward pass on this model's device."""
        if self.device.type == "cuda":
            return cuda_batch_tokens(self.model, self.device, max_seq_length)
        return cpu_batch_tokens()


def _model_input_names(tokenizer, model) -> tuple[str, ...]:
    accepted = inspect.signature(model.forward).parameters
    names = tuple(
        name for name in tokenizer.model_input_names if name in BUILDABLE_INPUTS and name in accepted
    )
    if "input_ids" not in names:
        raise ConfigError(
            f"the model's forward() takes {list(accepted)} and its tokenizer names "
            f"{list(tokenizer.model_input_names)}; the reader needs both to take 'input_ids': "
            "use a token-input question-answering model"
        )
    return names


def prepare_qa_model(
    tokenizer, model, device: str, fast: bool = False, source_dir: Path | None = None
) -> LoadedQAModel:
    """Check a tokenizer/model pair and put the model in eval mode on `device` (fp16 on CUDA).

    `fast=True` on the CPU builds the int8 ONNX Runtime runner (seconds: export and quantisation),
    once per model when `source_dir` names the folder the model was loaded from (the int8 graph is
    cached), at every call without it; on CUDA the model runs in fp16 either way and `fast` changes
    nothing.
    """
    import torch

    check_fast(fast)

    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(
            f"the reader needs a fast (tokenizers-backed) tokenizer for character offsets and word ids, "
            f"got {type(tokenizer).__name__}: use a model that ships a tokenizer.json"
        )
    # spanqa.devices: "auto" is the first CUDA GPU when torch sees one, else the CPU.
    torch_device = torch.device(resolve_device(device))
    model.eval()
    # fp16 halves memory and is several times faster on GPUs; CPUs gain nothing and lose accuracy.
    if torch_device.type == "cuda":
        model.to(device=torch_device, dtype=torch.float16)
    else:
        model.to(device=torch_device)
    word_ids_available = _word_ids_available(tokenizer)
    input_names = _model_input_names(tokenizer, model)
    use_fast = fast and torch_device.type == "cpu"
    if use_fast:
        runner = OnnxInt8Runner(
            model, tokenizer, input_names, threads=torch.get_num_threads(), source_dir=source_dir
        )
    else:
        pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        runner = packed_runner_if_equivalent(
            model,
            torch_device,
            input_names,
            vocab_size=int(getattr(getattr(model, "config", None), "vocab_size", None) or len(tokenizer)),
            pad_token_id=pad_token_id,
        ) or PaddedRunner(model, torch_device, input_names)
    return LoadedQAModel(
        tokenizer=tokenizer,
        model=model,
        device=torch_device,
        input_names=input_names,
        word_ids_available=word_ids_available,
        runner=runner,
        fast=use_fast,
        config=getattr(model, "config", None),
    )


def check_fast(fast: object) -> bool:
    """Validate the fast-mode setting: a bool (the `fast_reader` setting's check), and its optional
    packages installed when True."""
    if flag("fast", fast):
        check_fast_mode_available()
    return fast


def load_qa_model(model_name: str, device: str, fast: bool = False) -> LoadedQAModel:
    """Load `model_name` (hub id or local directory) with AutoTokenizer + AutoModelForQuestionAnswering.

    In fast mode on the CPU, a model whose int8 graph an earlier load cached is not loaded at all:
    importing its torch code and reading its weights were most of a one-question start."""
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    check_device(device)
    check_fast(fast)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_name)
        source_dir = model_source_directory(model_name) if fast else None
        cached = _cached_fast_model(model_name, tokenizer, device, source_dir)
        if cached is not None:
            return cached
        model = AutoModelForQuestionAnswering.from_pretrained(model_name)
    except Exception as error:  # transformers raises OSError, ValueError, KeyError... for a bad model
        raise ModelLoadError.from_cause("reader model", model_name, error) from error
    return prepare_qa_model(tokenizer, model, device, fast=fast, source_dir=source_dir)


def _cached_fast_model(
    model_name: str, tokenizer: Any, device: str, source_dir: Path | None
) -> LoadedQAModel | None:
    """The fast-mode reader of the model in `source_dir` from its cached int8 graph alone; None where
    there is none (or no `source_dir`: not fast mode, or a model without files; or not on the CPU).

    The graph's inputs are the tokenizer's (those a model takes are checked when the graph is built:
    a model that takes fewer was cached under other inputs, found by the full load)."""
    import torch
    from transformers import AutoConfig

    if source_dir is None or resolve_device(device) != "cpu" or not getattr(tokenizer, "is_fast", False):
        return None
    input_names = tuple(name for name in tokenizer.model_input_names if name in BUILDABLE_INPUTS)
    runner = OnnxInt8Runner.from_cache(input_names, torch.get_num_threads(), source_dir)
    if runner is None:
        return None
    return LoadedQAModel(
        tokenizer=tokenizer, model=None, device=torch.device("cpu"), input_names=input_names,
        word_ids_available=_word_ids_available(tokenizer), runner=runner, fast=True,
        config=AutoConfig.from_pretrained(model_name),
    )


def _word_ids_available(tokenizer: Any) -> bool:
    # Without a pre-tokenizer the tokenizers library counts the whole text as one word.
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return backend is not None and backend.pre_tokenizer is not None
