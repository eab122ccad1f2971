"""The critic's verdict on a trajectory, as ``metadata.critic``, and filtering by it.

``xlam-data critique`` writes the verdict; ``xlam-data filter`` and a source's
``min_score`` (``data.sources.NAME.min_score``) read it. The verdict is
``{score, reasons, judge, prompt_hash, status}`` (plus ``error`` when not scored), where
``status`` is ``scored`` (``score`` is 1..5), ``unparseable`` (the judge answered, but never
with a valid verdict) or ``failed`` (the judge could not be asked: errors after retries).

Pure data code: no judge, no network.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from xlam.data.schema import Trajectory

CRITIC_KEY = "critic"
STATUSES: tuple[str, ...] = ("scored", "unparseable", "failed")
MIN_SCORE, MAX_SCORE = 1, 5
# Why a trajectory does not pass a minimum score.
RULES: dict[str, str] = {
    "below_min_score": "scored below the minimum",
    "unparseable": "the judge never gave a valid verdict (no score)",
    "failed": "the judge could not be asked (no score; re-run xlam-data critique to retry)",
    "no_critic": "no valid metadata.critic (never critiqued)",
}


def check_min_score(where: str, value: int) -> None:
    """Raise unless ``value`` is a score (an integer 1..5)."""
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_SCORE <= value <= MAX_SCORE:
        raise ValueError(f"{where} must be an integer {MIN_SCORE}..{MAX_SCORE}, got {value!r}")


@dataclass
class CriticVerdict:
    """One judgement of one trajectory (``metadata.critic``).

    Attributes:
        status: ``scored``, ``unparseable`` or ``failed``.
        score: 1..5 when scored, else ``None``.
        reasons: The judge's reasons (empty when not scored).
        judge: Which judge (``openai:<model>``, ``hf:<folder>``).
        prompt_hash: Hash of the rubric prompt the judge was given.
        error: Why there is no score (``unparseable``, ``failed``).
    """

    status: str
    score: int | None = None
    reasons: str = ""
    judge: str = ""
    prompt_hash: str = ""
    error: str | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"critic status must be one of {', '.join(STATUSES)}: {self.status!r}")
        if self.status == "scored":
            check_min_score("a scored verdict's score", self.score)  # type: ignore[arg-type]
        elif self.score is not None:
            raise ValueError(f"a {self.status} verdict has no score, got {self.score!r}")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "score": self.score,
            "reasons": self.reasons,
            "judge": self.judge,
            "prompt_hash": self.prompt_hash,
            "status": self.status,
        }
        if self.error is not None:
            d["error"] = self.error
        return d

    @classmethod
    def from_dict(cls, d: Any) -> CriticVerdict:
        """Raises ``ValueError`` on anything that is not a verdict."""
        if not isinstance(d, dict):
            raise ValueError(f"metadata.critic must be an object, got {type(d).__name__}")
        reasons = d.get("reasons") or ""
        if not isinstance(reasons, str):
            raise ValueError("metadata.critic.reasons must be a string")
        return cls(
            status=d.get("status"),  # type: ignore[arg-type]
            score=d.get("score"),
            reasons=reasons,
            judge=str(d.get("judge") or ""),
            prompt_hash=str(d.get("prompt_hash") or ""),
            error=d.get("error"),
        )


def verdict_of(traj: Trajectory) -> CriticVerdict | None:
    """The trajectory's verdict; ``None`` when it has none.

    Raises:
        ValueError: ``metadata.critic`` is there but is not a verdict.
    """
    raw = traj.metadata.get(CRITIC_KEY)
    return None if raw is None else CriticVerdict.from_dict(raw)


def score_rule(traj: Trajectory, min_score: int) -> str | None:
    """``None`` when ``traj`` has a score ``>= min_score``, else the rule (:data:`RULES`)."""
    try:
        verdict = verdict_of(traj)
    except ValueError:
        return "no_critic"
    if verdict is None:
        return "no_critic"
    if verdict.status != "scored":
        return verdict.status
    assert verdict.score is not None
    return None if verdict.score >= min_score else "below_min_score"


@dataclass
class ScoreCounts:
    """What a minimum score kept and removed, per rule and per source.

    Attributes:
        min_score: The minimum.
        read: Trajectories read.
        kept: Trajectories with a score ``>= min_score``.
        removed: Count per rule.
        by_source: ``{source: {read, kept, removed: {rule: n}}}``.
    """

    min_score: int
    read: int = 0
    kept: int = 0
    removed: Counter[str] = field(default_factory=Counter)
    by_source: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, source: str, rule: str | None) -> None:
        row = self.by_source.setdefault(source, {"read": 0, "kept": 0, "removed": Counter()})
        self.read += 1
        row["read"] += 1
        if rule is None:
            self.kept += 1
            row["kept"] += 1
        else:
            self.removed[rule] += 1
            row["removed"][rule] += 1

    def to_dict(self) -> dict[str, Any]:
        """``read == kept + sum(removed)``, in total and per source."""
        return {
            "min_score": self.min_score,
            "read": self.read,
            "kept": self.kept,
            "removed": dict(sorted(self.removed.items())),
            "sources": {
                name: {
                    "read": row["read"],
                    "kept": row["kept"],
                    "removed": dict(sorted(row["removed"].items())),
                }
                for name, row in sorted(self.by_source.items())
            },
        }


__all__ = [
    "CRITIC_KEY",
    "MAX_SCORE",
    "MIN_SCORE",
    "RULES",
    "STATUSES",
    "CriticVerdict",
    "ScoreCounts",
    "check_min_score",
    "score_rule",
    "verdict_of",
]
