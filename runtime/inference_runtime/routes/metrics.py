"""Prometheus exposition: the framework's metrics and vLLM's ``vllm:*`` on one endpoint."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from inference_runtime.deps import StateDep, metrics_auth

router = APIRouter(tags=["metrics"])


@router.get("/metrics", summary="Prometheus metrics.", dependencies=[Depends(metrics_auth)])
async def metrics(state: StateDep) -> Response:
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
