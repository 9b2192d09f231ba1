"""The digit check as the data plane uses it: one verdict per picture, `strict=true`, the judge
that segmentation asks.

Holds the loaded check (`service.runtime.digit_check`) or why there is none. `verdicts` scores
a request's model input once (not once per variant) and, for `strict=true`, leaves out the
pictures that do not look like one digit before the classifiers run.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mnist_shared.segmentation import Judge
from service.dataplane.inference import ModelInput
from service.errors import BadRequest, NotADigit
from service.runtime.digit_check import DigitCheck

NOT_A_DIGIT = (
    "this does not look like a digit (strict=true): send a picture of one handwritten digit"
)


class DigitVerdicts:
    def __init__(self, check: DigitCheck | str) -> None:
        """`check`: the loaded check, or why there is none."""
        self._check = check if isinstance(check, DigitCheck) else None
        self._missing = "" if self._check else str(check)

    @property
    def judge(self) -> Judge | None:
        return self._check.judge if self._check else None

    @property
    def threshold(self) -> float:
        return self._check.threshold if self._check else 0.0

    def check_strict(self, strict: bool) -> None:
        """`strict` without a check is a bad request saying why (before any body is read)."""
        if strict and self._check is None:
            raise BadRequest(
                "strict=true needs the digit check, which this server has not loaded "
                f"({self._missing}); leave out strict"
            )

    async def verdicts(
        self, model_input: ModelInput, strict: bool, whole: bool
    ) -> tuple[ModelInput, np.ndarray | None]:
        """Each row's score (None without a check); with `strict`, the flagged rows left out."""
        if self._check is None:
            return model_input, None
        scores = await self._check.scores(model_input.images)
        if strict:
            return refuse_non_digits(model_input, scores, self._check.threshold, whole)
        return model_input, scores

    def describe(self) -> dict[str, Any]:
        """The check's version, threshold and figures, or why there is none."""
        return self._check.describe() if self._check else {"error": self._missing}


def refuse_non_digits(
    model_input: ModelInput, scores: np.ndarray, threshold: float, whole: bool
) -> tuple[ModelInput, np.ndarray]:
    """`strict=true`: the rows scoring below `threshold` left out as pictures without a digit
    are (an error entry in their place), NotADigit when none is left or when `whole`."""
    flagged = scores < threshold
    if not flagged.any():
        return model_input, scores
    if whole or flagged.all():
        raise NotADigit(
            f"{int(flagged.sum())} of {len(scores)} pictures do not look like one handwritten "
            f"digit (digit check score below {threshold:.3g}): send a picture of a single "
            "digit, or leave out strict=true to have every picture read anyway"
        )
    failures = dict(model_input.failures)
    rows = iter(range(len(scores)))
    for index in range(len(scores) + len(failures)):
        if index not in model_input.failures and flagged[next(rows)]:
            failures[index] = NOT_A_DIGIT
    kept = ~flagged
    return ModelInput(model_input.images[kept], failures, None), scores[kept]
