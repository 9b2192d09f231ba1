"""The digit check as the data plane uses it: one verdict per picture, `strict=true`, the judge
that segmentation asks.

Holds the loaded check (`service.runtime.digit_check`) or why there is none. `verdicts` takes
the scores the classifiers' sessions answered with the check folded in (or scores the model
input once, not once per variant, where none did) and, for `strict=true`, leaves out the
pictures that do not look like one digit, with their rows of every variant's answer.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from mnist_shared.segmentation import Judge
from service.dataplane.inference import ModelInput, VariantResult, several_digits
from service.errors import BadRequest, NotADigit
from service.runtime.digit_check import DigitCheck

NOT_A_DIGIT = (
    "this does not look like one digit (strict=true): send a picture of one handwritten digit "
    "(POST /read reads a picture of a whole number)"
)
NOT_A_NUMBER = (
    "this holds something that does not look like a digit, such as a letter or a symbol "
    "(strict=true): send a picture of a handwritten number"
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
        self,
        model_input: ModelInput,
        results: list[VariantResult],
        scores: np.ndarray | None,
        strict: bool,
        whole: bool,
    ) -> tuple[ModelInput, list[VariantResult], np.ndarray | None]:
        """Each row's score (`scores` when the classifiers answered them, else the check's;
        None without a check); with `strict`, the flagged rows left out of the input and of
        each variant's answer."""
        if self._check is None:
            return model_input, results, None
        if scores is None:
            scores = await self._check.scores(model_input.images)
        if not strict:
            return model_input, results, scores
        threshold = self._check.threshold
        if model_input.numbers is not None:
            kept_input, kept = refuse_non_numbers(model_input, scores, threshold, whole)
        else:
            kept_input, kept = refuse_non_digits(model_input, scores, threshold, whole)
        if kept is None:
            return model_input, results, scores
        return kept_input, [result.rows(kept) for result in results], scores[kept]

    def describe(self) -> dict[str, Any]:
        """The check's version, threshold and figures, or why there is none."""
        return self._check.describe() if self._check else {"error": self._missing}


def refuse_non_digits(
    model_input: ModelInput, scores: np.ndarray, threshold: float, whole: bool
) -> tuple[ModelInput, np.ndarray | None]:
    """`strict=true`: the rows scoring below `threshold` left out as pictures without a digit
    are (an error entry in their place), and which rows are kept (None: all of them);
    NotADigit when none is left or when `whole`."""
    flagged = (scores < threshold) | several_digits(model_input)
    if not flagged.any():
        return model_input, None
    if whole or flagged.all():
        raise NotADigit(
            f"{int(flagged.sum())} of {len(scores)} pictures do not look like one handwritten "
            f"digit (digit check score below {threshold:.3g}, or several digits side by side): "
            "send a picture of a single digit (POST /read reads a whole number), or leave out "
            "strict=true to have every picture read anyway"
        )
    failures = _with_refused(model_input.failures, flagged, NOT_A_DIGIT)
    kept = ~flagged
    beside = model_input.digits_beside
    return (
        ModelInput(
            model_input.images[kept], failures, None, None if beside is None else beside[kept]
        ),
        kept,
    )


def refuse_non_numbers(
    model_input: ModelInput, scores: np.ndarray, threshold: float, whole: bool
) -> tuple[ModelInput, np.ndarray | None]:
    """`strict=true` on readings: a picture any of whose digits is flagged (its score below
    `threshold`, or cut from a mark segmentation doubted) is left out as a picture without a
    number is, and which rows are kept (None: all of them); NotADigit when none is left or
    when `whole`."""
    assert model_input.numbers is not None
    sizes = [len(found) for found in model_input.numbers]
    flagged_rows = (scores < threshold) | several_digits(model_input)
    starts = np.cumsum([0, *sizes])
    flagged = np.array([flagged_rows[a:b].any() for a, b in itertools.pairwise(starts)], bool)
    if not flagged.any():
        return model_input, None
    if whole or flagged.all():
        raise NotADigit(
            f"{int(flagged.sum())} of {len(sizes)} pictures hold something that does not look "
            "like a digit (a letter, a symbol; the digit check): send pictures of handwritten "
            "numbers, or leave out strict=true to have every picture read anyway"
        )
    failures = _with_refused(model_input.failures, flagged, NOT_A_NUMBER)
    kept_rows = ~np.repeat(flagged, sizes)
    numbers = [found for found, refused in zip(model_input.numbers, flagged, strict=True)
               if not refused]  # fmt: skip
    return ModelInput(model_input.images[kept_rows], failures, numbers), kept_rows


def _with_refused(failures: dict[int, str], refused: np.ndarray, why: str) -> dict[int, str]:
    """`failures` (by input index) and `why` for each refused picture: `refused` holds one
    flag per picture that had no failure, in input order."""
    merged = dict(failures)
    readable = iter(range(len(refused)))
    for index in range(len(refused) + len(failures)):
        if index not in failures and refused[next(readable)]:
            merged[index] = why
    return merged
