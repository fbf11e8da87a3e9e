"""The training loop: AdamW with a linear warm-up and decay, gradient clipping, fp16 autocast on CUDA,
a checkpoint every N steps (weights, optimizer, schedule, random state and the place in the data),
an exact resume from the last one, and a clean stop on request (Ctrl-C) after writing one."""

from __future__ import annotations

import json
import math
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors.torch import load_model, save_model
from tqdm import tqdm

from spanqa.errors import ConfigError
from spanqa.settings import TrainSettings

CHECKPOINT_PREFIX = "step-"
KEPT_CHECKPOINTS = 2
MAX_GRAD_NORM = 1.0


class Task(Protocol):
    """What the loop trains: `items` examples per epoch, and the loss of a batch of them."""

    name: str
    items: int

    def loss(self, model: Any, indices: list[int]) -> torch.Tensor: ...


@dataclass
class LoopResult:
    steps: int
    total_steps: int
    stopped: bool
    seconds: float
    losses: list[float] = field(default_factory=list)  # each step's loss, this run's steps only

    def loss_summary(self) -> dict[str, float | None]:
        """Mean loss of the first and of the last tenth of this run's steps."""
        if not self.losses:
            return {"first": None, "last": None}
        tenth = max(1, len(self.losses) // 10)
        return {"first": sum(self.losses[:tenth]) / tenth, "last": sum(self.losses[-tenth:]) / tenth}


def total_steps(items: int, settings: TrainSettings) -> int:
    """Optimizer steps of a run: `max_steps`, else the epochs' worth of batches (at least one)."""
    if settings.max_steps is not None:
        return settings.max_steps
    return max(1, math.ceil(math.ceil(items / settings.batch_questions) * settings.epochs))


def epoch_batches(items: int, batch: int, epoch: int, seed: int) -> list[list[int]]:
    """The batches of epoch `epoch`: a permutation drawn from (`seed`, `epoch`) alone, so a resumed run
    sees the same order."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(items, generator=generator).tolist()
    return [order[first : first + batch] for first in range(0, items, batch)]


def _schedule(total: int, warmup_share: float) -> Callable[[int], float]:
    warmup = max(1, int(warmup_share * total))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def _optimizer(model: Any, settings: TrainSettings) -> torch.optim.Optimizer:
    decayed, plain = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (plain if parameter.ndim < 2 or "LayerNorm" in name else decayed).append(parameter)
    return torch.optim.AdamW(
        [{"params": decayed, "weight_decay": settings.weight_decay}, {"params": plain, "weight_decay": 0.0}],
        lr=settings.learning_rate,
    )


def checkpoints_in(directory: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under `directory`, oldest first (a checkpoint is renamed into place whole)."""
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        name = path.name
        if name.startswith(CHECKPOINT_PREFIX) and name[len(CHECKPOINT_PREFIX):].isdigit() and (path / "trainer.pt").is_file():
            found.append((int(name[len(CHECKPOINT_PREFIX):]), path))
    return sorted(found)


class Trainer:
    """Runs `task` on `model` for `total` steps, writing checkpoints under `directory`; `fingerprint`
    (the data and settings) must match a checkpoint's to resume from it."""

    def __init__(self, model: Any, task: Task, settings: TrainSettings, directory: Path, fingerprint: dict,
                 device: torch.device, total: int):
        self.model, self.task, self.settings = model, task, settings
        self.directory, self.fingerprint, self.device, self.total = directory, fingerprint, device, total
        self.optimizer = _optimizer(model, settings)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _schedule(total, settings.warmup))
        self.scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
        self.step = 0

    # -- checkpoints --------------------------------------------------------------------------------

    def save(self) -> Path:
        """A checkpoint of this step, written beside its final name and renamed into place; older
        ones beyond the last KEPT_CHECKPOINTS are deleted."""
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.directory / f"{CHECKPOINT_PREFIX}{self.step:08d}"
        partial = self.directory / f".{final.name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        save_model(self.model, str(partial / "model.safetensors"))
        state = {
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "cpu_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
        }
        torch.save(state, partial / "trainer.pt")
        (partial / "state.json").write_text(json.dumps({"step": self.step, "fingerprint": self.fingerprint}))
        for path in partial.iterdir():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        shutil.rmtree(final, ignore_errors=True)
        os.replace(partial, final)
        for _, old in checkpoints_in(self.directory)[:-KEPT_CHECKPOINTS]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def resume(self) -> int:
        """Loads the last checkpoint (weights, optimizer, schedule, random state); its step."""
        found = checkpoints_in(self.directory)
        if not found:
            raise ConfigError(f"--resume: no checkpoint of the {self.task.name} under {self.directory.parent.name}/"
                              f"{self.directory.name}: run without --resume to start")
        _, path = found[-1]
        saved = json.loads((path / "state.json").read_text())
        if saved["fingerprint"] != self.fingerprint:
            changed = sorted(key for key in set(saved["fingerprint"]) | set(self.fingerprint)
                             if saved["fingerprint"].get(key) != self.fingerprint.get(key))
            raise ConfigError(f"--resume: the checkpoint was made with other {', '.join(changed)}; resume with the "
                              "same data and settings, or start again without --resume in another --out")
        load_model(self.model, str(path / "model.safetensors"), device=str(self.device))
        state = torch.load(path / "trainer.pt", map_location="cpu", weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["cpu_rng"])
        if state["cuda_rng"]:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.step = int(saved["step"])
        return self.step

    # -- the loop -----------------------------------------------------------------------------------

    def _one_step(self, indices: list[int]) -> float:
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.device.type == "cuda"):
            loss = self.task.loss(self.model, indices)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), MAX_GRAD_NORM)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    def run(self, stop: threading.Event | None = None, show_progress: bool = False,
            on_step: Callable[[int, int, float], None] | None = None) -> LoopResult:
        """Steps from the current one to `total`; when `stop` is set, stops after the step under way and
        a checkpoint. Returns with the model in eval mode."""
        started, losses = time.monotonic(), []
        per_epoch = math.ceil(self.task.items / self.settings.batch_questions)
        bar = tqdm(total=self.total, initial=self.step, desc=f"training the {self.task.name}", unit="step",
                   disable=not show_progress, dynamic_ncols=True)
        self.model.train()
        stopped = False
        try:
            while self.step < self.total:
                epoch, position = divmod(self.step, per_epoch)
                batches = epoch_batches(self.task.items, self.settings.batch_questions, epoch, self.settings.seed)
                for indices in batches[position:]:
                    losses.append(self._one_step(indices))
                    self.step += 1
                    bar.update(1)
                    bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.3f}")
                    if on_step is not None:
                        on_step(self.step, self.total, losses[-1])
                    finished = self.step >= self.total
                    if self.step % self.settings.checkpoint_every == 0 and not finished:
                        self.save()
                    if finished:
                        break
                    if stop is not None and stop.is_set():
                        if self.step % self.settings.checkpoint_every != 0:
                            self.save()
                        stopped = True
                        break
                if stopped:
                    break
        finally:
            bar.close()
            self.model.eval()
        return LoopResult(self.step, self.total, stopped, time.monotonic() - started, losses)
