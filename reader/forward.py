"""Running a question-answering model over a batch of windows: start and end logits out.

Three runners share one call signature, `runner(batch) -> (start_logits, end_logits)`, both float64
arrays of the batch's padded shape (B, L) whose values on padding are meaningless:

- `PaddedRunner`: the model's own forward on the padded batch. Works for every model.
- `PackedDistilBertRunner`: DistilBERT's forward computed on the batch's real tokens only. The
  linear layers, layer norms and GELU (nearly all of the compute) see one (tokens, dim) matrix
  without padding rows, and attention runs per group of windows of (nearly) equal length. Same
  weights, same float32 math: logits equal the model's own to float rounding (about 1e-5),
  and it is checked against the model's own forward when the model is loaded.
- `OnnxInt8Runner` (`spanqa.reader.fast_mode`): the opt-in CPU fast mode, int8 ONNX Runtime.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from spanqa.reader.windows import WindowBatch

# Attention of a group of windows is padded to the group's longest window. A group keeps growing
# (windows come sorted by length) while its padded attention work stays within this factor of
# the work without padding; attention is a small share of the model, so a little padding there
# buys fewer, larger kernel calls.
ATTENTION_PADDING_SLACK = 2.0

# Token budget of a forward pass on CPU: large enough that matrix products run at full speed
# (a few hundred rows already do), small enough that activations stay in the tens of MB.
CPU_BATCH_TOKENS = 8192
# On CUDA the budget is sized from free memory: this share of it, at an estimate per token, ...
CUDA_MEMORY_SHARE = 0.5
# ... within these bounds.
CUDA_MIN_BATCH_TOKENS = 2048
CUDA_MAX_BATCH_TOKENS = 262_144

def _host_float64(tensor) -> np.ndarray:
    """A device tensor as a float64 numpy array: one conversion on the device, one transfer."""
    import torch

    return tensor.detach().to(torch.float64).cpu().numpy()


def _scatter_rows(packed: np.ndarray, batch: WindowBatch) -> np.ndarray:
    """Per-token values of the batch's windows, back end to end, into the batch's (B, L) shape."""
    out = np.zeros(batch.input_ids.shape, dtype=np.float64)
    out[batch.attention_mask.astype(bool)] = packed
    return out


class PaddedRunner:
    """The model's own forward over the padded batch (any question-answering model)."""

    kind = "padded"

    def __init__(self, model: Any, device: Any, input_names: tuple[str, ...]):
        self.model = model
        self.device = device
        self.input_names = input_names

    def __call__(self, batch: WindowBatch) -> tuple[np.ndarray, np.ndarray]:
        import torch

        arrays = {
            "input_ids": batch.input_ids,
            "attention_mask": batch.attention_mask,
            "token_type_ids": batch.token_type_ids,
        }
        non_blocking = self.device.type == "cuda"
        inputs = {
            name: torch.from_numpy(arrays[name]).to(self.device, non_blocking=non_blocking)
            for name in self.input_names
        }
        with torch.inference_mode():
            output = self.model(**inputs)
            # float64 on the host: fp16 logits from a GPU would lose ties and overflow the softmax.
            return _host_float64(output.start_logits), _host_float64(output.end_logits)


@dataclass(frozen=True)
class _PackedLayout:
    """Where each real token of a packed batch sits in the padded layout its attention runs in.

    Windows (sorted by length) are cut into attention groups; group g pads its windows to its own
    longest, `length`. `gather` lists, for every row of all groups' padded blocks end to end, the
    packed row to read (padding rows read their window's first token: masked as keys, discarded
    as queries). Within each group, `windows_of_tokens`/`positions_of_tokens` say where each of the
    group's real tokens is in its (windows, length) block.
    """

    gather: Any  # LongTensor (padded rows,) or None when no window is padded anywhere
    groups: list[tuple[int, int, int, int, Any, Any, Any]]
    # per group: (padded row offset, windows, length, real tokens, key mask or None,
    #             window of each real token, position of each real token)


def is_distilbert_qa(model: Any) -> bool:
    """Whether `model` looks like transformers' DistilBertForQuestionAnswering (the packed runner's layout)."""
    config = getattr(model, "config", None)
    base = getattr(model, "distilbert", None)
    return (
        getattr(config, "model_type", None) == "distilbert"
        and base is not None
        and hasattr(model, "qa_outputs")
        and hasattr(base, "embeddings")
        and hasattr(getattr(base, "transformer", None), "layer")
    )


class PackedDistilBertRunner:
    """DistilBERT question answering computed on real tokens only; see the module docstring.

    Every operation is one kernel over all tokens of the batch wherever possible (query, key and
    value projections fused into one matrix product; bias and residual added by the product
    itself), so a forward pass launches no more kernels than the padded one: fewer FLOPs without
    more calls. The fused query/key/value weights are a copy made here: a model changed after
    loading needs a new reader.
    """

    kind = "packed"

    def __init__(self, model: Any, device: Any):
        import torch

        self.model = model
        self.device = device
        config = model.config
        self.heads = int(config.n_heads)
        self.dim = int(config.dim)
        self.head_dim = self.dim // self.heads
        self.fused_qkv = []
        with torch.no_grad():
            for layer in model.distilbert.transformer.layer:
                attention = layer.attention
                weight = torch.cat([attention.q_lin.weight, attention.k_lin.weight, attention.v_lin.weight])
                bias = torch.cat([attention.q_lin.bias, attention.k_lin.bias, attention.v_lin.bias])
                self.fused_qkv.append((weight.detach().t(), bias.detach()))

    def __call__(self, batch: WindowBatch) -> tuple[np.ndarray, np.ndarray]:
        import torch

        real = batch.attention_mask.astype(bool)
        lengths = batch.lengths
        token_ids = batch.input_ids[real]  # windows end to end, row order
        window_starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        positions = np.arange(token_ids.shape[0]) - np.repeat(window_starts, lengths)
        non_blocking = self.device.type == "cuda"
        ids = torch.from_numpy(token_ids).to(self.device, non_blocking=non_blocking)
        position_ids = torch.from_numpy(positions).to(self.device, non_blocking=non_blocking)
        with torch.inference_mode():
            logits = self.forward_packed(ids, position_ids, lengths)
            start, end = _host_float64(logits[:, 0]), _host_float64(logits[:, 1])
        return _scatter_rows(start, batch), _scatter_rows(end, batch)

    def _layout(self, lengths: np.ndarray) -> _PackedLayout:
        """Attention groups (consecutive windows while padding stays within ATTENTION_PADDING_SLACK)."""
        import torch

        lengths = np.asarray(lengths, dtype=np.int64)
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        bounds = [0]
        squares = 0
        for index, length in enumerate(lengths.tolist()):
            first = bounds[-1]
            candidate = squares + length**2
            longest = int(lengths[first : index + 1].max())
            if index > first and (index + 1 - first) * longest**2 > ATTENTION_PADDING_SLACK * candidate:
                bounds.append(index)
                squares = length**2
            else:
                squares = candidate
        bounds.append(len(lengths))

        def tensor(array: np.ndarray):
            return torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64)).to(self.device)

        groups = []
        gathers = []
        padded_offset = 0
        any_padding = False
        for first, last in zip(bounds[:-1], bounds[1:], strict=True):
            group_lengths = lengths[first:last]
            windows, length = last - first, int(group_lengths.max())
            real = np.arange(length)[None, :] < group_lengths[:, None]  # (windows, length)
            padded = not bool(real.all())
            any_padding = any_padding or padded
            rows = np.where(real, starts[first:last, None] + np.arange(length)[None, :], starts[first:last, None])
            gathers.append(rows.reshape(-1))
            token_windows, token_positions = np.nonzero(real)
            key_mask = torch.from_numpy(real).to(self.device)[:, None, None, :] if padded else None
            groups.append(
                (padded_offset, windows, length, int(group_lengths.sum()), key_mask,
                 tensor(token_windows) if padded else None, tensor(token_positions) if padded else None)
            )
            padded_offset += windows * length
        gather = tensor(np.concatenate(gathers)) if any_padding else None
        return _PackedLayout(gather=gather, groups=groups)

    def _attention(self, qkv, layout: _PackedLayout):
        """Context vectors (tokens, dim) from the fused (tokens, 3 * dim) query/key/value projections."""
        import torch
        from torch.nn.functional import scaled_dot_product_attention

        heads, head_dim, dim = self.heads, self.head_dim, self.dim
        padded = qkv if layout.gather is None else qkv.index_select(0, layout.gather)
        contexts = []
        for offset, windows, length, _tokens, key_mask, token_windows, token_positions in layout.groups:
            block = padded[offset : offset + windows * length].view(windows, length, 3, heads, head_dim)
            query, key, value = (part.transpose(1, 2) for part in block.unbind(2))  # (windows, heads, length, head_dim)
            attended = scaled_dot_product_attention(query, key, value, attn_mask=key_mask).transpose(1, 2)
            if token_windows is None:
                contexts.append(attended.reshape(windows * length, dim))
            else:
                contexts.append(attended[token_windows, token_positions].reshape(-1, dim))
        return contexts[0] if len(contexts) == 1 else torch.cat(contexts)

    def forward_packed(self, ids, position_ids, lengths: np.ndarray):
        """(tokens, 2) start/end logits of windows laid end to end in `ids` (eval mode; no dropout)."""
        import torch

        base = self.model.distilbert
        embeddings = base.embeddings
        hidden = embeddings.word_embeddings(ids) + embeddings.position_embeddings(position_ids)
        hidden = embeddings.LayerNorm(hidden)
        layout = self._layout(lengths)
        for layer, (qkv_weight, qkv_bias) in zip(base.transformer.layer, self.fused_qkv, strict=True):
            context = self._attention(torch.addmm(qkv_bias, hidden, qkv_weight), layout)
            out_lin = layer.attention.out_lin
            # residual + bias, then the product accumulated into it (one kernel, beta=1)
            hidden = layer.sa_layer_norm((hidden + out_lin.bias).addmm_(context, out_lin.weight.t()))
            ffn = layer.ffn
            inner = ffn.activation(torch.addmm(ffn.lin1.bias, hidden, ffn.lin1.weight.t()))
            hidden = layer.output_layer_norm((hidden + ffn.lin2.bias).addmm_(inner, ffn.lin2.weight.t()))
        return self.model.qa_outputs(hidden)


def probe_batch(vocab_size: int, pad_token_id: int) -> WindowBatch:
    """Two short windows of different lengths (so one is padded) with deterministic token ids."""
    lengths = np.array([7, 12], dtype=np.int64)
    length = int(lengths.max())
    input_ids = np.full((2, length), pad_token_id, dtype=np.int64)
    rng = np.random.default_rng(0)
    for row, filled in enumerate(lengths):
        input_ids[row, :filled] = rng.integers(min(5, vocab_size - 1), vocab_size, size=filled)
    attention_mask = (np.arange(length)[None, :] < lengths[:, None]).astype(np.int64)
    token_type_ids = np.zeros_like(input_ids)
    token_type_ids[:, 4:] = attention_mask[:, 4:]
    return WindowBatch(
        window_indices=np.arange(2, dtype=np.int64),
        lengths=lengths,
        input_ids=input_ids,
        token_type_ids=token_type_ids,
        attention_mask=attention_mask,
        passage_tokens=attention_mask.astype(bool),
        word_ids=np.zeros_like(input_ids),
        offsets=np.zeros((*input_ids.shape, 2), dtype=np.int64),
    )


def logits_agree(
    reference: tuple[np.ndarray, np.ndarray], other: tuple[np.ndarray, np.ndarray], batch: WindowBatch,
    tolerance: float,
) -> bool:
    """Whether `other`'s start and end logits are finite and within `tolerance` (relative to the
    largest reference logit, at least 1) of `reference`'s on the batch's real tokens."""
    real = batch.attention_mask.astype(bool)
    for expected, got in zip(reference, other, strict=True):
        expected, got = expected[real], got[real]
        scale = max(1.0, float(np.abs(expected).max()))
        if not np.all(np.isfinite(got)) or float(np.abs(expected - got).max()) > tolerance * scale:
            return False
    return True


def packed_runner_if_equivalent(
    model: Any, device: Any, input_names: tuple[str, ...], vocab_size: int, pad_token_id: int
) -> PackedDistilBertRunner | None:
    """A `PackedDistilBertRunner` when the model is a DistilBERT QA model and the packed forward
    reproduces the model's own logits on a probe batch; else None (the padded runner is used).

    The check guards against a transformers version whose DistilBERT differs from the layout the
    packed forward assumes.
    """
    if not is_distilbert_qa(model):
        return None
    import torch

    probe = probe_batch(vocab_size, pad_token_id)
    tolerance = 1e-3 if next(model.parameters()).dtype == torch.float32 else 3e-2
    try:
        packed = PackedDistilBertRunner(model, device)
        if logits_agree(PaddedRunner(model, device, input_names)(probe), packed(probe), probe, tolerance):
            return packed
    except Exception:  # an unexpected module layout: fall back to the model's own forward
        return None
    return None


def cpu_batch_tokens() -> int:
    return CPU_BATCH_TOKENS


def cuda_batch_tokens(model: Any, device: Any, max_seq_length: int) -> int:
    """Tokens per forward pass that fit the GPU's free memory, estimated from the model's config.

    Per token, the live activations of one layer are about 8 hidden vectors, 2 feed-forward
    vectors and (if attention is not fused) one attention row per head; the estimate is doubled
    for allocator slack, then `CUDA_MEMORY_SHARE` of free memory is used.
    """
    import torch

    free, _ = torch.cuda.mem_get_info(device)
    config = getattr(model, "config", None)
    hidden = int(getattr(config, "dim", None) or getattr(config, "hidden_size", 1024))
    feed_forward = int(getattr(config, "hidden_dim", None) or getattr(config, "intermediate_size", 4 * hidden))
    heads = int(getattr(config, "n_heads", None) or getattr(config, "num_attention_heads", 16))
    element = next(model.parameters()).element_size()
    per_token = 2 * element * (8 * hidden + 2 * feed_forward + heads * max_seq_length)
    budget = int(free * CUDA_MEMORY_SHARE) // per_token
    return int(min(CUDA_MAX_BATCH_TOKENS, max(CUDA_MIN_BATCH_TOKENS, budget)))
