"""The service's reader training: one job at a time, run as `spanqa train --from-feedback INDEX` in a
child process (its memory or a crash cannot take the server down, and it runs at a lower CPU
priority than the answers), followed through the progress file the child writes; when it finishes
the served reader is switched to the trained one, and the reader it replaced is kept to roll back to.

The trained readers live in the index folder (`readers/`), so they move and back up with it.
`readers/active.json` records the switch: a server started again over the index with the reader the
switch replaced serves the trained one (a server started with another `--reader` serves that one).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from contextlib import suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from spanqa.atomic_files import write_json_atomically
from spanqa.errors import ConfigError, SpanQAError
from spanqa.paths import model_reference
from spanqa.settings import QASettings, TrainSettings

logger = logging.getLogger(__name__)

READERS_DIR = "readers"
ACTIVE_FILE = "active.json"
STOP_WAIT_S = 600  # how long closing the server waits for a stopped run's checkpoint before killing it
LOWER_PRIORITY = 10  # the child's niceness: questions come first
FINISHED = ("done", "failed", "stopped")


class TrainingConflict(SpanQAError):
    """A training action that cannot run now (one is running, none is, nothing to roll back to)."""


def served_reader(index_dir: Path, qa: QASettings) -> QASettings:
    """`qa` with the reader a training switch left in `index_dir` when `qa` names the reader it replaced."""
    path = index_dir / READERS_DIR / ACTIVE_FILE
    try:
        switch = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return qa
    if switch.get("replaced") != qa.reader.reader or not Path(str(switch.get("serving"))).is_dir():
        return qa
    logger.info("serving the reader trained from feedback (%s); `POST /v1/training/rollback` goes back",
                Path(switch["serving"]).name)
    return qa.replace(reader=switch["serving"])


def now_utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def train_command(index_dir: Path, out: Path, progress: Path, qa: QASettings, settings: TrainSettings) -> list[str]:
    """The child's command line: the served reader and its window, ranking and device settings, and
    the training settings, each as its declared option."""
    command = [sys.executable, "-m", "spanqa.cli", "train", "--from-feedback", str(index_dir), "--index",
               str(index_dir), "--out", str(out), "--progress-file", str(progress), "--json"]
    chosen = [(qa.reader, ("reader", "max_seq_length", "doc_stride", "max_question_length")),
              (qa.rerank, ("rerank", "reranker", "rerank_max_tokens")), (qa.retrieval, ("retrieval", "retriever_top_k")),
              (qa.device, ("device",)), (settings, tuple(info.name for info in settings.infos()))]
    for component, names in chosen:
        for info in component.infos():
            value = getattr(component, info.name)
            if info.name not in names or value is None:
                continue
            if isinstance(value, bool):
                command += [info.flag] if value else []
            else:
                command += [info.flag, str(value)]
    return command


class ReaderTraining:
    """The training job of one server over `index_dir`; `switch(model)` makes the engine read with a
    model (loaded before it answers with it)."""

    def __init__(self, index_dir: Path, qa: Callable[[], QASettings], switch: Callable[[str], None]):
        self.index_dir, self._qa, self._switch = index_dir, qa, switch
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._status: dict[str, Any] = {"state": "idle"}

    @property
    def readers(self) -> Path:
        return self.index_dir / READERS_DIR

    def _switch_record(self) -> dict[str, Any]:
        try:
            return json.loads((self.readers / ACTIVE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def status(self) -> dict[str, Any]:
        """The job's state ("idle", "running", "stopping", "done", "failed", "stopped"), its progress
        from the child's file, and the readers served and kept to roll back to."""
        with self._lock:
            status = dict(self._status)
        if status["state"] in ("running", "stopping"):
            try:
                status.update(json.loads(Path(status.pop("progress_file")).read_text(encoding="utf-8")))
            except (OSError, ValueError):
                status.pop("progress_file", None)
        status.pop("progress_file", None)
        switch = self._switch_record()
        status["serving"] = Path(self._qa().reader.reader).name
        status["previous"] = None if not switch.get("previous") else Path(switch["previous"]).name
        return status

    def start(self, settings: TrainSettings, submitted_by: str) -> dict[str, Any]:
        """Starts a run on every piece of feedback collected (a TrainingConflict while one runs)."""
        with self._lock:
            if self._status["state"] in ("running", "stopping"):
                raise TrainingConflict(f"a training run is under way (job {self._status['job']}): follow it with "
                                       "GET /v1/training, or stop it with POST /v1/training/stop")
            job = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
            out = self.readers / job
            self.readers.mkdir(parents=True, exist_ok=True)
            progress = self.readers / f".{job}.progress.json"
            qa = self._qa()
            command = train_command(self.index_dir, out, progress, qa, settings)
            log = open(self.readers / f"{job}.log", "w", encoding="utf-8")  # noqa: SIM115 - the child holds it
            self._process = subprocess.Popen(  # noqa: S603 - our own command line, no shell
                command, stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True,
                env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
            )
            with suppress(OSError):  # questions come first; a system that refuses leaves it as it is
                os.setpriority(os.PRIO_PROCESS, self._process.pid, LOWER_PRIORITY)
            self._status = {"state": "running", "job": job, "submitted_by": submitted_by, "started_at": now_utc(),
                            "progress_file": str(progress), "base": Path(qa.reader.reader).name}
            threading.Thread(target=self._follow, args=(self._process, out, qa.reader.reader, log),
                             name="spanqa-training", daemon=True).start()
        return self.status()

    def _follow(self, process: subprocess.Popen, out: Path, base: str, log) -> None:
        stdout, _ = process.communicate()
        log.close()
        result: dict[str, Any] = {"finished_at": now_utc()}
        try:
            if process.returncode == 130:
                result.update(state="stopped", detail="stopped after a checkpoint")
            elif process.returncode != 0:
                result.update(state="failed", detail=self._last_words(out.name))
            else:
                report = json.loads(stdout)
                result.update(before=report.get("before"), after=report.get("after"), steps=report.get("steps"))
                self._switch(str(out))
                self._record_switch(serving=str(out), previous=base)
                result.update(state="done", detail=f"now serving the reader trained in job {out.name}")
        except (SpanQAError, ValueError, OSError) as error:
            result.update(state="failed", detail=f"trained, but not served: {error}")
            logger.warning("the trained reader %s is not served: %s", out.name, error)
        with self._lock:
            self._status.update(result)
            self._process = None

    def _last_words(self, job: str) -> str:
        """The child's last `spanqa:` line: why it failed."""
        try:
            lines = (self.readers / f"{job}.log").read_text(encoding="utf-8").splitlines()
        except OSError:
            return "the training run failed"
        said = [line for line in lines if line.startswith("spanqa:")]
        return said[-1].removeprefix("spanqa:").strip() if said else "the training run failed"

    def _record_switch(self, serving: str, previous: str) -> None:
        switch = self._switch_record()
        replaced = switch.get("replaced") if switch.get("serving") == previous else previous
        write_json_atomically(self.readers / ACTIVE_FILE,
                              {"serving": serving, "previous": previous, "replaced": replaced or previous})

    def stop(self) -> dict[str, Any]:
        """Asks the run to stop after its next checkpoint (Ctrl-C's clean stop)."""
        with self._lock:
            if self._process is None or self._status["state"] != "running":
                raise TrainingConflict("no training run is under way")
            self._process.send_signal(signal.SIGINT)
            self._status["state"] = "stopping"
        return self.status()

    def rollback(self) -> dict[str, Any]:
        """Serves the reader the last switch replaced again (loaded before it answers)."""
        with self._lock:
            if self._status["state"] in ("running", "stopping"):
                raise TrainingConflict("a training run is under way: stop it first")
        switch = self._switch_record()
        previous, serving = switch.get("previous"), switch.get("serving")
        if not previous or serving != self._qa().reader.reader:
            raise TrainingConflict("there is no earlier reader to go back to")
        try:
            self._switch(previous)
        except SpanQAError as error:
            raise ConfigError(f"the earlier reader could not be loaded again: {error}") from error
        write_json_atomically(self.readers / ACTIVE_FILE, {"serving": model_reference(previous), "previous": None,
                                                           "replaced": switch.get("replaced")})
        return self.status()

    def close(self) -> None:
        """On the server's stop: a run under way stops after a checkpoint (killed after STOP_WAIT_S)."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            process.kill()
