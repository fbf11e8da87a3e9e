"""The losses: the reader's shared normalisation (one softmax over the start, and one over the end,
of every candidate position of all of a question's passages, so a span's score means the same in
any passage), with spans marked wrong pushed down; and the reranker's listwise loss (the question's
own passage against the retrieved ones)."""

from __future__ import annotations

import torch

WRONG_CAP = 1.0 - 1e-6  # a wrong span's probability is capped so its loss stays finite


def shared_norm_loss(
    start_logits: torch.Tensor,
    end_logits: torch.Tensor,
    candidates: torch.Tensor,
    starts: torch.Tensor,
    ends: torch.Tensor,
    group_of: torch.Tensor,
    groups: int,
    wrong: torch.Tensor,
) -> torch.Tensor:
    """Mean over the groups of: -log P(an answer start) - log P(an answer end), each probability a
    softmax over all candidate positions of the group's windows, summed over the answer's positions
    (an answer found twice counts both: Clark & Gardner's shared normalisation); plus, for each span
    marked wrong, -log(1 - P(start) P(end)). (B, L) logits and masks; `wrong` (K, 3): row, start, end."""
    start_logits = start_logits.float().masked_fill(~candidates, float("-inf"))
    end_logits = end_logits.float().masked_fill(~candidates, float("-inf"))
    losses = []
    for group in range(groups):
        rows = group_of == group
        start, end = start_logits[rows], end_logits[rows]
        start_norm, end_norm = torch.logsumexp(start.flatten(), 0), torch.logsumexp(end.flatten(), 0)
        loss = start.new_zeros(())
        if starts[rows].any():
            loss = loss + start_norm - torch.logsumexp(start[starts[rows]], 0)
            loss = loss + end_norm - torch.logsumexp(end[ends[rows]], 0)
        for row, first, last in wrong[group_of[wrong[:, 0]] == group].tolist():
            log_p = start_logits[row, first] - start_norm + end_logits[row, last] - end_norm
            loss = loss - torch.log1p(-log_p.exp().clamp(max=WRONG_CAP))
        losses.append(loss)
    return torch.stack(losses).mean()


def listwise_loss(logits: torch.Tensor, group_sizes: tuple[int, ...]) -> torch.Tensor:
    """Mean over the groups of -log softmax(group's logits)[0]: the first passage is the relevant one."""
    losses = []
    first = 0
    for size in group_sizes:
        scores = logits[first : first + size].float()
        losses.append(torch.logsumexp(scores, 0) - scores[0])
        first += size
    return torch.stack(losses).mean()
