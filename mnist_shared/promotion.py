"""Which version of a variant requests naming none get: a new version takes over only if it is
no worse than the one it would replace, on the same evaluations (the promotion gate).

Every exported version carries its figures in its manifest: accuracy on the test split, where
export was given the client-picture set on each kind of client picture (fp32's, as the INT8
gate measured them), and where it was trained with corrections from users on the share of them
held out, beside the default version's accuracy on the same pictures. Versions are taken oldest
first: the oldest is the first default (a first version keeps today's behaviour), and each
newer one replaces the default only if, on no evaluation both were measured on with the same
number of pictures, it reads worse than the default by more than MNIST_PROMOTION_TOLERANCE
points and the noise of the evaluation's sample (see `allowed_drop`). Besides each kind of
client picture, all kinds together are an evaluation of their own: a version a little worse on
every kind is held back there. One that does not take over is a candidate: loaded, reachable
with `version=N`, shown in `/models` with both versions' figures and the reasons.
MNIST_PROMOTION=always makes the newest the default whatever its figures (the behaviour before
the gate). An operator's choice (`mnist-models promote|rollback`, or the repository API's load
with a version), kept in `serving.json` beside the versions, overrides the gate.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

from mnist_shared.manifest import Manifest
from mnist_shared.serving_choice import SERVING_FILE, ServingChoice, read_choice

TEST_SPLIT = "test split"
CLIENT_KIND = "client pictures: "  # the prefix of each kind's evaluation
EVERY_KIND = "client pictures, every kind"

# How far a drop may go by chance before it counts: the one-sided 5% level of an unpaired
# two-proportion test, on each evaluation. Both versions read the same pictures, so a real
# difference spreads less than that test assumes (docs/lifecycle.md: what it catches).
NOISE_Z = NormalDist().inv_cdf(0.95)


@dataclass(frozen=True)
class Verdict:
    """A version's comparison with the default it would have replaced."""

    version: int
    against: int
    passed: bool
    reasons: list[str] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)  # this version's, in percent
    against_figures: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        verb = "replaces" if self.passed else "does not replace"
        why = f": {'; '.join(self.reasons)}" if self.reasons else ""
        return f"version {self.version} {verb} version {self.against} as the default{why}"

    def describe(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "compared_with": self.against,
            "promoted": self.passed,
            "reasons": self.reasons,
            "figures": self.figures,
            "compared_with_figures": self.against_figures,
        }


def figures(manifest: Manifest) -> dict[str, tuple[float, int]]:
    """(accuracy, pictures) of each evaluation the version was measured on at export."""
    measured = {TEST_SPLIT: (manifest.test_accuracy, manifest.test_samples)}
    for twin in manifest.precisions.values():  # fp32's figures, as the twin's gate took them
        for kind, row in twin.kinds.items():
            if "fp32_accuracy" in row:
                measured[f"{CLIENT_KIND}{kind}"] = (
                    row["fp32_accuracy"],
                    int(row.get("pictures", 0)),
                )
        break
    for name, evaluation in manifest.evaluations.items():
        measured[name] = (evaluation.accuracy, evaluation.pictures)
    return measured


def _baselines(new: Manifest, default: Manifest) -> dict[str, tuple[float, float]]:
    """(new's, the default's) accuracy on evaluations export measured both on: `new`'s
    evaluations whose baseline is `default` (held-out corrections it was trained beside)."""
    return {
        name: (evaluation.accuracy, evaluation.baseline_accuracy)
        for name, evaluation in new.evaluations.items()
        if evaluation.baseline_version == default.version
        and evaluation.baseline_accuracy is not None
    }


def difference_spread(accuracy: float, pictures: int) -> float:
    """The standard error of the difference of two accuracies near `accuracy`, each measured
    on `pictures` pictures (as a fraction, not points)."""
    return math.sqrt(2 * accuracy * (1 - accuracy) / max(pictures, 1))


def allowed_drop(accuracy: float, default: float, pictures: int, z: float) -> float:
    """Points an evaluation of `pictures` may drop by chance: z standard errors of the
    difference of two accuracies of that many pictures (pooled, as a two-proportion test)."""
    return 100 * z * difference_spread((accuracy + default) / 2, pictures)


def shared_figures(new: Manifest, default: Manifest) -> dict[str, tuple[float, float, int]]:
    """(new's, the default's accuracy, pictures) of every evaluation both were measured on with
    the same number of pictures, all kinds of client picture together among them."""
    ours, theirs = figures(new), figures(default)
    shared = {
        name: (ours[name][0], theirs[name][0], ours[name][1])
        for name in theirs
        if name in ours and ours[name][1] == theirs[name][1]
    }
    for name, (accuracy, baseline) in _baselines(new, default).items():
        shared.setdefault(name, (accuracy, baseline, new.evaluations[name].pictures))
    kinds = [row for name, row in shared.items() if name.startswith(CLIENT_KIND)]
    if len(kinds) > 1:
        pictures = sum(n for _, _, n in kinds)
        shared[EVERY_KIND] = (
            sum(a * n for a, _, n in kinds) / pictures,
            sum(b * n for _, b, n in kinds) / pictures,
            pictures,
        )
    return shared


def judge(new: Manifest, default: Manifest, tolerance_points: float) -> Verdict:
    """`new` against the `default` it would replace (see the module's docstring)."""
    shared = shared_figures(new, default)
    if not shared:
        reason = (
            f"measured on no evaluation of the same size as version {default.version} "
            f"(its test split: {default.test_samples} images, this one's: {new.test_samples}); "
            "export it with the full test split, or promote it by hand"
        )
        return Verdict(new.version, default.version, False, [reason])
    reasons = []
    for name, (accuracy, baseline, pictures) in shared.items():
        allowed = tolerance_points + allowed_drop(accuracy, baseline, pictures, NOISE_Z)
        drop = 100 * (baseline - accuracy)
        if drop > allowed + 1e-9:
            reasons.append(
                f"{name}: {100 * accuracy:.2f}% against {100 * baseline:.2f}% ({drop:.2f} points "
                f"lower, more than the {allowed:.2f} that MNIST_PROMOTION_TOLERANCE="
                f"{tolerance_points:g} and the noise of {pictures} pictures allow)"
            )
    percent = {name: round(100 * row[0], 2) for name, row in shared.items()}
    against = {name: round(100 * row[1], 2) for name, row in shared.items()}
    return Verdict(new.version, default.version, not reasons, reasons, percent, against)


@dataclass(frozen=True)
class DefaultVersion:
    """What requests naming none get, why, and each newer version's verdict."""

    version: int | None
    verdicts: dict[int, Verdict] = field(default_factory=dict)
    choice: ServingChoice | None = None  # an operator's promote or rollback, when it applies
    note: str = ""  # why an operator's choice does not apply


# A second opinion on a verdict the manifests passed: (new, default) -> reasons it is worse
# after all (the service measures both on its gate sample), empty when it is not.
Recheck = Callable[[Manifest, Manifest], list[str]]


def choose_among(
    variant_dir: Path,
    versions: list[int],
    *,
    always: bool,
    tolerance_points: float,
    recheck: Recheck | None = None,
) -> DefaultVersion:
    """`choose_default` over the manifests of `versions` in `variant_dir` (one that cannot be
    read is left out: loading it says what is wrong), unless an operator chose a version
    (`serving.json`) that is among them."""
    manifests = {}
    for version in versions:
        with contextlib.suppress(OSError, ValueError):
            manifests[version] = Manifest.read(variant_dir / str(version))
    default, verdicts = choose_default(manifests, always, tolerance_points, recheck)
    try:
        choice = read_choice(variant_dir)
    except ValueError as error:
        return DefaultVersion(default, verdicts, note=f"{error}; the promotion gate decides")
    if choice is None:
        return DefaultVersion(default, verdicts)
    if choice.version not in manifests:
        note = (
            f"{SERVING_FILE} names version {choice.version}, which is not on disk or did not "
            "load; the promotion gate decides"
        )
        return DefaultVersion(default, verdicts, note=note)
    return DefaultVersion(choice.version, verdicts, choice)


def choose_default(
    manifests: dict[int, Manifest],
    always: bool,
    tolerance_points: float,
    recheck: Recheck | None = None,
) -> tuple[int | None, dict[int, Verdict]]:
    """The default version out of `manifests` (the versions that may serve) and the verdict of
    each version newer than the first (see the module's docstring)."""
    if not manifests:
        return None, {}
    versions = sorted(manifests)
    if always:
        return versions[-1], {}
    default, verdicts = versions[0], {}
    for version in versions[1:]:
        verdict = judge(manifests[version], manifests[default], tolerance_points)
        reasons = recheck(manifests[version], manifests[default]) if recheck else []
        if verdict.passed and reasons:
            verdict = dataclasses.replace(verdict, passed=False, reasons=reasons)
        verdicts[version] = verdict
        if verdict.passed:
            default = version
    return default, verdicts


# The service's own evaluation of every version it loads, whatever its manifest says: 1,000
# MNIST test digits (a seeded draw) in models/gate_sample.npz.
GATE_SAMPLE = "gate_sample.npz"


def load_gate_sample(models_dir: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(uint8 (N, 28, 28) digits, labels) of `models_dir`'s gate sample; None without one."""
    try:
        with np.load(models_dir / GATE_SAMPLE) as sample:
            return sample["images"], sample["labels"].astype(np.int64)
    except (OSError, KeyError, ValueError):
        return None


def sample_reasons(
    new: tuple[int, float], default: tuple[int, float], pictures: int, tolerance_points: float
) -> list[str]:
    """Why version `new` (number, accuracy on the gate sample) is worse than `default` after
    all: lower by more than the tolerance and two standard errors of the difference."""
    (version, accuracy), (default_version, default_accuracy) = new, default
    spread = 2 * difference_spread(default_accuracy, pictures)
    drop = 100 * (default_accuracy - accuracy)
    if drop <= tolerance_points + 100 * spread:
        return []
    return [
        f"on the service's gate sample of {pictures} test digits version {version} reads "
        f"{100 * accuracy:.2f}% against {100 * default_accuracy:.2f}% for version "
        f"{default_version}, whatever its manifest says"
    ]
