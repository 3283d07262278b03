"""``make demo``: the product end to end, live in the terminal.

An emulated cluster, a real Prometheus scraping simulated traffic, and the
real operator: a healthy release is promoted, then a release answering 5% of
requests with 5xx is rolled back. Every line shows what the operator measured
(real Prometheus numbers from its last check) and decided.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
from typing import Any

from canary_bench import stage as stages
from canary_operator import models
from canary_operator.rollouts import plan as plans


def _fmt(value: float | None, unit: str, digits: int = 1) -> str:
    return "   n/a" if value is None else f"{value:6.{digits}f}{unit}"


def _arm_line(check: dict[str, Any], arm: str, window_seconds: float) -> str:
    metrics = {m["name"]: m for m in check.get("metrics", [])}
    errors = metrics.get("error-rate", {})
    latency = metrics.get("latency-p99", {})
    requests = errors.get(f"{arm}Requests")
    rate = None if requests is None else requests / window_seconds
    return f"{arm:7} {_fmt(rate, ' req/s')} {_fmt(errors.get(arm), '% 5xx', 2)} p99 {_fmt(latency.get(arm), 'ms', 0)}"


def _verdict(check: dict[str, Any]) -> str:
    """The check's verdict, its cause, and whether the default pass rule (no-harm) lets the step advance on it."""
    text = str(check["verdict"]) + (f" ({check['cause']})" if check.get("cause") else "")
    if check["verdict"] == "Inconclusive" and check.get("cleared"):
        text += ": not proven yet, but no harm shown, so the step may advance (passRule no-harm)"
    elif check["verdict"] == "Inconclusive" and check.get("cleared") is False:
        text += ": the step holds (too few requests at this step, or a value past its limit not proven yet)"
    return text


class Narrator:
    """Prints status changes, checks and Events as they happen."""

    def __init__(self, stage: stages.Stage) -> None:
        self.stage = stage
        self.started = time.monotonic()
        self.seen_events: set[str] = set()
        self.last_line = ""
        self.last_check_at: str | None = None

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {text}", flush=True)

    def poll(self) -> dict[str, Any]:
        status = self.stage.status()
        steps = len(self.stage.plan.steps)
        index = status.get("currentStepIndex")
        step = f"step {min(index + 1, steps)}/{steps}" if index is not None else "step -/-"
        line = f"{status.get('phase', '-'):12} {step}  weight {status.get('weight', 0):3}%"
        check = status.get("lastCheck")
        if check and check.get("at") != self.last_check_at:
            self.last_check_at = check.get("at")
            window = float(self.stage.plan.interval.rstrip("s"))
            self.say(f"{line}  check: {_verdict(check)}")
            self.say(f"    {_arm_line(check, 'canary', window)}")
            self.say(f"    {_arm_line(check, 'primary', window)}")
            self.last_line = line
        elif line != self.last_line:
            self.say(line)
            self.last_line = line
        for event in sorted(self.stage.events(), key=lambda e: e.get("metadata", {}).get("creationTimestamp", "")):
            uid = event["metadata"]["name"]
            if uid not in self.seen_events:
                self.seen_events.add(uid)
                self.say(f"  event {event['type']:7} {event['reason']}: {event['message']}")
        return status

    def follow_until(self, phases: set[str], timeout: float, previous: dict[str, Any] | None = None) -> dict[str, Any]:
        """Narrate until the rollout is in one of ``phases``, for a release other than the one in ``previous``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.poll()
            new = previous is None or status.get("releaseId") != previous.get("releaseId")
            if status.get("phase") in phases and new:
                return status
            time.sleep(0.25)
        raise stages.StageError(f"demo: no {phases} within {timeout}s")


def keep_up(stage: stages.Stage) -> None:
    """Leave the cluster, Prometheus, traffic and the operator running until Ctrl-C, and say how to reach them."""
    assert stage.cluster is not None
    bin_dir = pathlib.Path(sys.executable).parent
    print()
    print("The cluster stays up until Ctrl-C. In another terminal:")
    print(f"  export KUBECONFIG={stage.cluster.kubeconfig}")
    print(f"  export PATH={bin_dir}:$PATH   # kubectl, and kubectl-canary for the plugin")
    print("  kubectl canary get web -n shop --watch")
    print("  kubectl -n shop set image deployment/web web=example/web:3.0        # any other image is healthy")
    print("  kubectl -n shop set image deployment/web web=example/web:2.0-slow   # p99 about 800ms: rolled back")
    print("  kubectl canary history web -n shop; kubectl canary explain web -n shop")
    print(flush=True)
    try:
        while stage.operator_running:
            time.sleep(1)
        print("the operator stopped; tearing down")
    except KeyboardInterrupt:
        print("tearing down")


def run(rate: float, keep: bool = False) -> int:
    print("canary-operator demo: emulated Kubernetes API, real Prometheus, simulated traffic, real operator")
    with stages.Stage(rate=rate, keep_logs=True) as stage:
        narrator = Narrator(stage)
        assert stage.prometheus is not None and stage.cluster is not None
        narrator.say(f"cluster at {stage.cluster.url}, Prometheus at {stage.prometheus.url}, {rate:g} req/s to web")
        steps = [models.Step.model_validate(step) for step in stage.plan.steps]
        narrator.say(
            f"plan: {plans.summary(steps)}, check every {stage.plan.interval}, failureThreshold "
            f"{stage.plan.failure_threshold}, error-rate <= {stage.plan.max_error_rate:g}%, "
            f"p99 <= {stage.plan.max_latency_ms:g}ms"
        )
        narrator.follow_until({"Stable"}, 30)
        stage.wait_traffic()
        summary = []
        for image, expect in (("example/web:2.0", "Succeeded"), ("example/web:2.0-errors", "RolledBack")):
            print()
            narrator.say(f"$ kubectl -n shop set image deployment/web web={image}")
            began = time.monotonic()
            previous = stage.status()
            stage.set_image(image)
            status = narrator.follow_until({"Succeeded", "RolledBack"}, 120, previous)
            took = time.monotonic() - began
            summary.append((image, status["phase"], took, status.get("message", "")))
            if status["phase"] != expect:
                narrator.say(f"unexpected outcome {status['phase']} (expected {expect})")
        print()
        print(stage.kubectl("get", "canaryrollouts", "-n", "shop", "-o", "wide").stdout)
        print("summary")
        for image, phase, took, message in summary:
            print(f"  {image:24} {phase:11} after {took:5.1f}s  {message}")
        failures = [
            row for row, expected in zip(summary, ("Succeeded", "RolledBack"), strict=True) if row[1] != expected
        ]
        print(f"operator log (JSON lines, one story per release id): {stage.operator_log}")
        if keep:
            keep_up(stage)
        else:
            print("make demo KEEP=1 keeps all of it running, for kubectl and kubectl canary (get, history, explain)")
        return 1 if failures else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=300.0, help="requests per second to web")
    parser.add_argument(
        "--keep", action="store_true", help="keep the cluster up afterwards (until Ctrl-C) for kubectl and the plugin"
    )
    args = parser.parse_args()
    sys.exit(run(args.rate, args.keep))


if __name__ == "__main__":
    main()
