"""The HTTP API of reader training (admins without a scope: a run learns from every user's feedback
and changes the reader everyone is answered by): start a run on the collected feedback, follow it,
stop it, and roll the served reader back."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from spanqa.errors import ConfigError
from spanqa.service.http_errors import ApiError
from spanqa.service.routes import admin, service
from spanqa.service.schemas import TrainingRequest, TrainingStatus
from spanqa.service.state import ServiceState
from spanqa.service.tokens import Principal
from spanqa.service.training import ReaderTraining, TrainingConflict
from spanqa.settings import TrainSettings

router = APIRouter(tags=["training"])


def training_of(state: ServiceState, who: Principal) -> ReaderTraining:
    if who.scope:
        raise ApiError(403, "forbidden", "training learns from every user's feedback and changes the reader everyone "
                       "is answered by: it needs an admin token without a scope")
    if state.training is None:
        raise ApiError(409, "conflict", "this server reads on Ray replicas, which it cannot switch: train with "
                       "`spanqa train --from-feedback INDEX` and serve the result with --reader")
    return state.training


def shown(state: ServiceState, status: dict[str, Any]) -> dict[str, Any]:
    """A status with every server path in its display form."""
    return {key: state.paths().redact(value) if isinstance(value, str) else value for key, value in status.items()}


@router.get("/v1/training", response_model=TrainingStatus)
async def training_status(request: Request, who: Principal = Depends(admin)) -> dict:
    """The training run under way or the last one (its progress and held-out figures), and the reader
    served."""
    state = service(request)
    return shown(state, training_of(state, who).status())


@router.post("/v1/training", status_code=202, response_model=TrainingStatus)
async def start_training(body: TrainingRequest, request: Request, who: Principal = Depends(admin)) -> dict:  # type: ignore[valid-type]
    """Fine-tune the served reader on all feedback collected (answers marked right learnt, those marked
    wrong unlearnt), each question read with the passages retrieved for it; when it finishes, the
    server answers with the trained reader, and the one it replaced is kept for `/v1/training/rollback`."""
    state = service(request)
    training = training_of(state, who)
    given = {name: value for name, value in body.model_dump().items() if value is not None}
    try:
        settings = TrainSettings(**given)
    except ConfigError as error:
        raise ApiError(422, "invalid_request", str(error)) from error
    if state.database.feedback_count() == 0:
        raise ApiError(409, "conflict", "no feedback has been collected yet: mark answers right or wrong first")
    try:
        return shown(state, await run_in_threadpool(training.start, settings, who.name))
    except TrainingConflict as error:
        raise ApiError(409, "conflict", str(error)) from error


@router.post("/v1/training/stop", response_model=TrainingStatus)
async def stop_training(request: Request, who: Principal = Depends(admin)) -> dict:
    """Stop the run under way after its next checkpoint; the served reader stays as it is."""
    state = service(request)
    try:
        return shown(state, training_of(state, who).stop())
    except TrainingConflict as error:
        raise ApiError(409, "conflict", str(error)) from error


@router.post("/v1/training/rollback", response_model=TrainingStatus)
async def rollback_training(request: Request, who: Principal = Depends(admin)) -> dict:
    """Answer with the reader the last training run replaced again (loaded before it answers)."""
    state = service(request)
    try:
        return shown(state, await run_in_threadpool(training_of(state, who).rollback))
    except TrainingConflict as error:
        raise ApiError(409, "conflict", str(error)) from error
