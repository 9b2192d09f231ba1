"""`POST /feedback`: a user's correction of a reading (the page's "the right digit is"),
parsed here and kept by the data plane's `FeedbackStore`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from service.dataplane.feedback import MAX_INPUT_CHARS
from service.rest.dependencies import DataPlaneDep
from service.rest.responses import ERROR_RESPONSES

router = APIRouter()


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: str = Field(
        max_length=MAX_INPUT_CHARS,
        description="The 28x28 picture the model read: the base64 PNG `return_input=true` gave.",
    )
    label: int = Field(ge=0, le=9, description="The digit it should have read.")
    variant: str = Field(max_length=32, description="The variant asked for (or all).")
    versions: dict[str, int] = Field(
        default_factory=dict, max_length=8, description="The version of each variant that read it."
    )


@router.post(
    "/feedback",
    status_code=201,
    summary="Correct a reading: kept for retraining (when MNIST_FEEDBACK_DIR is set)",
    responses={**ERROR_RESPONSES, 429: {"description": "Too many corrections from this client."}},
)
async def feedback(
    request: Request, body: FeedbackRequest, dataplane: DataPlaneDep
) -> dict[str, Any]:
    client = request.client.host if request.client else "unknown"
    variant = dataplane.metric_label(body.variant)
    kept = dataplane.feedback.keep(client, body.input, body.label, variant, body.versions)
    return {"kept": kept}
