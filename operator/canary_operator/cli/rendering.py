"""What ``kubectl canary`` prints: pure functions from API objects (and a clock) to lines of text.

Everything here reads the CanaryRollout as the API server returns it (plus the
primary and canary Deployments for their images) and never calls out, so each
view is tested on status objects the state machine wrote.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

import pydantic

from canary_operator import models

Phase = models.Phase
Verdict = models.Verdict

UNITS = {"error-rate": "%", "latency-p99": "ms", "request-rate": " req/s"}


# ---------------------------------------------------------------- small formats


def _time(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def duration(seconds: float | None) -> str:
    """kubectl's short human durations: 45s, 3m20s, 2h5m, 3d4h."""
    if seconds is None:
        return "-"
    s = max(int(round(seconds)), 0)
    if s < 120:
        return f"{s}s"
    minutes, s = divmod(s, 60)
    if minutes < 60:
        return f"{minutes}m{s}s" if s and minutes < 10 else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes}m" if minutes and hours < 8 else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h" if hours and days < 8 else f"{days}d"


def age(text: str | None, now: datetime.datetime) -> str:
    at = _time(text)
    return "-" if at is None else duration((now - at).total_seconds())


def clock(text: str | None) -> str:
    at = _time(text)
    return "-" if at is None else at.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if unit == "%":
        return f"{value:.2f}%"
    if unit == "ms":
        return f"{value:.0f}ms"
    return f"{value:.4g}{unit}"


def count(value: float | None) -> str:
    return "-" if value is None else f"{int(round(value))}"


def table(rows: Sequence[Sequence[str]], indent: str = "") -> list[str]:
    """Left-aligned columns three spaces apart, as kubectl prints them."""
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [indent + "   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


# ---------------------------------------------------------------- reading the object


class View:
    """A CanaryRollout as read from the API: the spec when it parses, the status always."""

    def __init__(self, body: Mapping[str, Any]) -> None:
        self.body = body
        self.name = str(body["metadata"]["name"])
        self.namespace = str(body["metadata"].get("namespace") or "")
        self.status = models.parse_status(body.get("status"))
        self.spec: models.CanaryRolloutSpec | None
        self.spec_error: str | None = None
        try:
            self.spec = models.parse_spec(body.get("spec"))
        except pydantic.ValidationError as exc:
            self.spec, self.spec_error = None, models.explain(exc)

    @property
    def steps(self) -> list[models.Step]:
        return self.spec.steps if self.spec is not None else []

    @property
    def step(self) -> str:
        """n/N: the status' own field when the operator wrote it, else derived the same way."""
        if self.status.step:
            return self.status.step
        return models.step_label(self.status.phase, self.status.current_step_index, len(self.steps)) or "-"

    @property
    def phase(self) -> str:
        return self.status.phase.value if self.status.phase else "-"

    def condition(self, kind: str) -> models.Condition | None:
        return next((c for c in self.status.conditions if c.type == kind), None)

    def unit(self, metric: str) -> str:
        if self.spec is None:
            return ""
        found = next((m for m in self.spec.analysis.metrics if m.name == metric), None)
        return UNITS.get(found.template.value, "") if found is not None and found.template else ""

    def desired_weight(self) -> int:
        if self.spec is None:
            return 0
        if self.status.phase in models.EXPOSED_PHASES:
            index = min(self.status.current_step_index or 0, len(self.steps) - 1)
            for step in reversed(self.steps[: index + 1]):
                if step.set_weight is not None:
                    return step.set_weight
        return 0


def image_of(deployment: Mapping[str, Any] | None) -> str:
    if not deployment:
        return "-"
    containers = ((deployment.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or []
    return ",".join(str(c.get("image", "?")) for c in containers) or "-"


def _describe_step(step: models.Step) -> str:
    if step.set_weight is not None:
        return f"setWeight {step.set_weight}%"
    assert step.pause is not None
    return f"pause {step.pause.duration}" if step.pause.duration else "pause until promoted"


# ---------------------------------------------------------------- what happens next


def waiting_for(view: View, now: datetime.datetime) -> str:
    """What the rollout waits for, and until when, in plain words."""
    status, spec, name = view.status, view.spec, view.name
    if view.spec_error is not None:
        return f"a valid spec: {view.spec_error}"
    assert spec is not None
    target = spec.target_ref.name
    stalled = view.condition("Stalled")
    if status.phase is None or status.phase is Phase.INITIALIZING:
        return f"{target}-primary to be ready, then {target} is scaled to 0"
    if status.phase in (Phase.STABLE, Phase.SUCCEEDED):
        if stalled is not None and stalled.status == "True":
            return f"{stalled.reason}: {stalled.message}"
        return f"a new revision of Deployment {target} (kubectl set image, or a Git sync)"
    if status.phase is Phase.ROLLED_BACK:
        return (
            f"a new revision of Deployment {target}; revision {status.rejected_revision} is rejected"
            f" (kubectl canary retry {name} runs it again)"
        )
    if status.phase is Phase.PROMOTING:
        return f"{target}-primary to roll out revision {status.canary_revision}; then traffic goes 100% to it"
    if status.phase is Phase.PAUSED:
        reason = stalled.reason if stalled is not None else "held"
        resumes = (
            "resumes when checks are conclusive"
            if status.hold is models.Hold.INCONCLUSIVE
            else f"resumes on kubectl canary resume {name}"
        )
        return f"held ({reason}) at weight {status.weight}%: {resumes}; kubectl canary abort {name} rolls back"
    index = min(status.current_step_index or 0, len(spec.steps) - 1)
    step = spec.steps[index]
    interval = datetime.timedelta(seconds=spec.analysis.interval_seconds)
    settled = _time(status.weight_settled_at)
    if step.pause is not None and step.pause.duration is None:
        return f"kubectl canary promote {name} (the pause step has no duration)"
    if settled is None:
        return f"the canary to reach weight {view.desired_weight()}% (now {status.weight}%)"
    last = _time(status.last_check_at)
    next_check = max(settled, last) + interval if last else settled + interval
    until = ""
    if step.pause is not None and step.pause.seconds is not None:
        started = _time(status.step_started_at) or now
        end = started + datetime.timedelta(seconds=step.pause.seconds)
        if end > now:
            until = f"the pause to end at {end:%H:%M:%S} (in {duration((end - now).total_seconds())}) and "
    when = (
        "due now"
        if next_check <= now
        else f"at {next_check:%H:%M:%S} (in {duration((next_check - now).total_seconds())})"
    )
    following = (
        f"step {index + 2}/{len(spec.steps)} ({_describe_step(spec.steps[index + 1])})"
        if index + 1 < len(spec.steps)
        else "promotion"
    )
    # Under the default pass rule a check short of proof advances the step when it shows no harm: say so.
    wanted = "a passing check" if spec.analysis.pass_rule == "proven" else "a check that shows no harm"
    return f"{until}{wanted}, next {when}; then {following}"


# ---------------------------------------------------------------- get


def check_table(view: View, check: models.CheckRecord) -> list[str]:
    rows = [["METRIC", "VERDICT", "CANARY", "PRIMARY", "LIMIT", "REQUESTS (CANARY/PRIMARY)"]]
    for m in check.metrics:
        unit = view.unit(m.name)
        rows.append(
            [
                m.name,
                m.verdict.value,
                number(m.canary, unit),
                number(m.primary, unit),
                m.limit or "-",
                f"{count(m.canary_requests)}/{count(m.primary_requests)}",
            ]
        )
    return table(rows, indent="  ")


def get(
    body: Mapping[str, Any],
    now: datetime.datetime,
    primary: Mapping[str, Any] | None = None,
    canary: Mapping[str, Any] | None = None,
) -> list[str]:
    """``kubectl canary get NAME``: one rollout at a glance."""
    view = View(body)
    status = view.status
    lines = [
        f"Name:        {view.name}",
        f"Namespace:   {view.namespace}",
        f"Phase:       {view.phase}" + (f" ({status.message})" if status.message else ""),
        f"Step:        {view.step}"
        + (
            f" ({_describe_step(view.steps[min(status.current_step_index or 0, len(view.steps) - 1)])})"
            if view.step != "-" and view.steps
            else ""
        ),
        f"Weight:      {status.weight}% (desired {view.desired_weight()}%)",
        f"Stable:      {status.stable_revision or '-'}   {image_of(primary)}",
    ]
    if status.canary_revision and status.phase in models.EXPOSED_PHASES:
        lines.append(f"Canary:      {status.canary_revision}   {image_of(canary)}")
    elif status.canary_revision and status.canary_revision != status.stable_revision:
        lines.append(f"Last canary: {status.canary_revision}   ({status.phase.value if status.phase else '-'})")
    if status.rejected_revision:
        lines.append(f"Rejected:    {status.rejected_revision}")
    if status.release_id:
        lines.append(f"Release:     {status.release_id}")
    lines.append(f"Waiting for: {waiting_for(view, now)}")
    check = status.last_check
    if check is not None:
        lines += [
            "",
            f"Last check:  {check.verdict.value}"
            + (" (no harm shown: the step may advance)" if check.cleared and check.verdict is not Verdict.PASS else "")
            + f" at {clock(check.at)} ({age(check.at, now)} ago)"
            + (f", window {check.window}" if check.window else "")
            + f", weight {check.weight}%",
        ]
        lines += check_table(view, check)
        streaks = {k: v for k, v in status.failed_checks.items() if v}
        if streaks:
            threshold = view.spec.analysis.failure_threshold if view.spec else "?"
            lines.append("  failed in a row: " + ", ".join(f"{name} {n}/{threshold}" for name, n in streaks.items()))
        if status.inconclusive_checks:
            limit = view.spec.analysis.inconclusive_threshold if view.spec else "?"
            lines.append(f"  inconclusive in a row: {status.inconclusive_checks}/{limit}")
    if status.gates:
        lines += ["", "Gates:"]
        lines += table(
            [["NAME", "TYPE", "OPEN", "AT", "ANSWER"]]
            + [[g.name, g.type, "yes" if g.open else "no", clock(g.at), g.message or "-"] for g in status.gates],
            indent="  ",
        )
    if status.conditions:
        lines += ["", "Conditions:"]
        lines += table(
            [["TYPE", "STATUS", "REASON", "SINCE"]]
            + [[c.type, c.status, c.reason, age(c.last_transition_time, now)] for c in status.conditions],
            indent="  ",
        )
    if status.last_request is not None:
        r = status.last_request
        lines += ["", f"Last request: {r.request.annotation}={r.value} {age(r.at, now)} ago: {r.outcome}"]
    return lines


# ---------------------------------------------------------------- list


def listing(bodies: Sequence[Mapping[str, Any]], now: datetime.datetime, all_namespaces: bool = False) -> list[str]:
    """``kubectl canary list``: one line per CanaryRollout."""
    head = ["NAME", "PHASE", "STEP", "WEIGHT", "LAST VERDICT", "AGE"]
    rows = [["NAMESPACE", *head] if all_namespaces else head]
    for body in sorted(bodies, key=lambda b: (b["metadata"].get("namespace", ""), b["metadata"]["name"])):
        view = View(body)
        row = [
            view.name,
            view.phase,
            view.step,
            f"{view.status.weight}%",
            view.status.last_verdict or "-",
            age(body["metadata"].get("creationTimestamp"), now),
        ]
        rows.append([view.namespace, *row] if all_namespaces else row)
    return table(rows)


# ---------------------------------------------------------------- history

OUTCOMES = {
    "promoted": "Promoted",
    "rolled_back": "RolledBack",
    "aborted": "Aborted",
    "superseded": "Superseded",
    "abandoned": "Abandoned",
}


def history(body: Mapping[str, Any]) -> list[str]:
    """``kubectl canary history``: the last releases, newest first."""
    view = View(body)
    rows = [["RELEASE", "REVISION", "OUTCOME", "STARTED", "DURATION", "DETECTED IN", "RESTORED IN", "WHY"]]
    for r in reversed(view.status.releases):
        rows.append(
            [
                r.release_id,
                r.revision,
                OUTCOMES.get(r.outcome, r.outcome),
                clock(r.started_at),
                duration(r.duration_seconds),
                duration(r.time_to_detect_seconds),
                duration(r.time_to_restore_seconds),
                r.reason or "-",
            ]
        )
    if len(rows) == 1:
        return [f"No releases of {view.name} yet: the first new revision of its Deployment starts one."]
    current = view.status
    lines = table(rows)
    if current.phase in models.EXPOSED_PHASES and current.release_id:
        lines.insert(
            1,
            table(
                [
                    rows[0],
                    [
                        current.release_id,
                        current.canary_revision or "-",
                        current.phase.value,
                        clock(current.canary_started_at),
                        "-",
                        "-",
                        "-",
                        "under way",
                    ],
                ]
            )[1],
        )
    return lines


# ---------------------------------------------------------------- explain


def _metric_story(view: View, m: models.MetricResult, check: models.CheckRecord) -> list[str]:
    unit = view.unit(m.name)
    lines = [
        f"  {m.name}: {m.verdict.value}. Canary {number(m.canary, unit)} over {count(m.canary_requests)} requests,"
        f" primary {number(m.primary, unit)} over {count(m.primary_requests)} requests; limit {m.limit or '-'}.",
        f"    {m.reason}",
    ]
    if m.statistic:
        lines.append(f"    test: {m.statistic}, p = {m.p_value}, excess {m.bound}")
    if m.needed_requests:
        lines.append(f"    about {m.needed_requests} more canary requests are needed to conclude")
    if m.query:
        at = _time(check.at)
        stamp = f" at {at:%Y-%m-%dT%H:%M:%SZ}" if at else ""
        lines.append(f"    PromQL (evaluate{stamp}):")
        lines.append(f"      {m.query}")
    return lines


def _checks_of(status: models.CanaryRolloutStatus, release: str | None) -> list[models.CheckRecord]:
    checks = [c for c in status.recent_checks if release is None or c.release == release]
    last = status.last_check
    if last is not None and (release is None or last.release == release):
        # The recent checks are kept without their PromQL; the last one is whole: it stands for its copy.
        checks = [c for c in checks if c.at != last.at] + [last]
    return checks


def _evidence_story(status: models.CanaryRolloutStatus) -> list[str]:
    """A rollback no check failed: the continuous test of the counts since the canary started decided it.

    Its record (``status.evidence``) is the rolled-back canary's while the rollout is RolledBack: a new canary
    starts it afresh.
    """
    evidence = status.evidence
    if status.phase is not Phase.ROLLED_BACK or evidence is None or evidence.verdict is not Verdict.FAIL:
        return []
    lines = [
        f"No check failed: the always-valid test of the counts since the canary started failed at {clock(evidence.at)}"
        " (the continuous analysis between checks; it needs no failureThreshold):"
    ]
    for e in evidence.metrics:
        if e.verdict is Verdict.FAIL:
            primary = (
                f", primary {count(e.primary_bad)} of {count(e.primary_requests)}"
                if e.primary_requests is not None
                else ""
            )
            lines.append(
                f"  {e.metric}: canary {count(e.canary_bad)} bad of {count(e.canary_requests)} requests{primary},"
                f" over {e.window}; always-valid p = {e.p_value}."
            )
    return lines


def explain(body: Mapping[str, Any]) -> list[str]:
    """``kubectl canary explain``: why the last release ended (or is held) the way it did, with its numbers."""
    view = View(body)
    status = view.status
    threshold = view.spec.analysis.failure_threshold if view.spec else None
    if view.spec_error is not None:
        return [f"{view.name} cannot progress: its spec is invalid.", f"  {view.spec_error}"]
    stalled = view.condition("Stalled")
    if status.phase is Phase.PAUSED or (
        stalled is not None and stalled.status == "True" and stalled.reason != "RolledBack"
    ):
        lines = [
            f"Revision {status.canary_revision or '-'} is held at step {view.step}, weight {status.weight}%:"
            f" {stalled.reason if stalled else 'Paused'}.",
            f"  {stalled.message if stalled else status.message or ''}",
        ]
        checks = _checks_of(status, status.release_id)
        if checks:
            last = checks[-1]
            inconclusive = sum(1 for c in checks if c.verdict is Verdict.INCONCLUSIVE)
            lines.append(f"The last {len(checks)} checks: {inconclusive} inconclusive. The last one, {clock(last.at)}:")
            for m in last.metrics:
                lines += _metric_story(view, m, last)
        by_itself = (
            "It resumes by itself when checks are conclusive again; " if status.hold is models.Hold.INCONCLUSIVE else ""
        )
        lines.append(
            f"{by_itself}kubectl canary resume {view.name} releases it, kubectl canary abort {view.name} rolls it back."
        )
        return lines
    if not status.releases:
        if status.phase in models.EXPOSED_PHASES:
            return [
                f"Revision {status.canary_revision} is under way ({view.phase}, step {view.step}); nothing ended yet."
            ]
        return [f"{view.name} has released nothing yet."]
    release = status.releases[-1]
    took = duration(release.duration_seconds)
    if release.outcome in ("rolled_back", "aborted"):
        lines = [
            f"Revision {release.revision} was rolled back at {clock(release.finished_at)}, {took} after it started"
            f" (release {release.release_id}).",
            f"Why: {release.reason}",
        ]
        figures = [f"detected in {duration(release.time_to_detect_seconds)}"]
        if release.time_to_restore_seconds is not None:
            figures.append(
                f"traffic back on the primary {duration(release.time_to_restore_seconds)} after the first failure"
            )
        lines.append("Figures: " + ", ".join(figures) + ".")
        checks = _checks_of(status, release.release_id)
        failing = [c for c in checks if c.verdict is Verdict.FAIL]
        if failing:
            last = failing[-1]
            rule = f" (failureThreshold {threshold})" if threshold else ""
            lines.append(
                f"{len(failing)} of the last {len(checks)} checks failed{rule}. The last failing check, at weight"
                f" {last.weight}%, {clock(last.at)}:"
            )
            for m in last.metrics:
                if m.verdict is Verdict.FAIL:
                    lines += _metric_story(view, m, last)
        else:
            lines += _evidence_story(status)
        if status.rejected_revision == release.revision:
            lines.append(
                f"Revision {release.revision} is not released again until the Deployment's template changes;"
                f" kubectl canary retry {view.name} runs it again."
            )
        return lines
    if release.outcome == "promoted":
        lines = [
            f"Revision {release.revision} was promoted at {clock(release.finished_at)}, {took} after it started:"
            f" {release.reason}."
        ]
        # Under passRule no-harm the last step may have advanced on a check that showed no harm, not a pass.
        checks = [c for c in _checks_of(status, release.release_id) if c.verdict is Verdict.PASS or c.cleared]
        if checks:
            last = checks[-1]
            which = "passing check" if last.verdict is Verdict.PASS else "check (no harm shown, not proven)"
            lines.append(f"The last {which}, at weight {last.weight}%, {clock(last.at)}:")
            for m in last.metrics:
                lines += _metric_story(view, m, last)
        return lines
    outcome = OUTCOMES.get(release.outcome, release.outcome).lower()
    return [
        f"Release {release.release_id} of revision {release.revision} was {outcome}"
        f" at {clock(release.finished_at)}: {release.reason}"
    ]
