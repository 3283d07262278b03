"""``kubectl canary``: the commands, their flags, and kubectl's exit codes and messages.

kubectl runs ``kubectl-canary`` from ``PATH`` with the arguments after ``canary``.
Reads print views (``rendering``); control commands write one request
annotation (``canary.dev/<action>``) with a merge patch, which a Git re-sync
leaves alone because Git never set it; the operator acts on it, records the
outcome in ``status.lastRequest`` and removes it.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TextIO

from canary_operator import models
from canary_operator.cli import connecting, rendering

RESOURCE = f"{models.PLURAL}.{models.GROUP}"
REQUESTS = {
    "promote": "canary.dev/promote",
    "abort": "canary.dev/abort",
    "retry": "canary.dev/retry",
    "pause": "canary.dev/pause",
    "resume": "canary.dev/resume",
}
HELP = {
    "get": "Show one rollout: phase, step n/N, weights, the last check, what it waits for",
    "list": "List CanaryRollouts",
    "promote": (
        "Pass the manual gate (a `pause: {}` step) the canary waits at; a timed pause is not shortened"
        " (--full: skip the remaining steps after the next passed check)"
    ),
    "abort": "Roll the canary back now, as a failed analysis would, and reject its revision",
    "retry": "Release a rejected (rolled back) revision again",
    "pause": "Hold the canary at its current weight",
    "resume": "Release a held canary",
    "history": "The last releases: outcome, durations, time to detect and restore, why each ended",
    "explain": "Why the last release was rolled back or is held, with the numbers and the PromQL",
}


class UsageError(Exception):
    """Wrong command line: kubectl prints 'error: ...' and exits 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    parser.add_argument("--context", help="kubeconfig context to use")
    parser.add_argument("--kubeconfig", help="path to the kubeconfig file")


def parser() -> argparse.ArgumentParser:
    top = _Parser(prog="kubectl canary", description="Watch and steer canary-operator's CanaryRollouts.")
    commands = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, text in HELP.items():
        sub = commands.add_parser(name, help=text, description=text)
        _common(sub)
        if name == "list":
            sub.add_argument("-A", "--all-namespaces", action="store_true")
        else:
            sub.add_argument("name", metavar="NAME")
        if name == "get":
            sub.add_argument("-w", "--watch", action="store_true", help="redraw on every change")
            sub.add_argument("--interval", type=float, default=1.0, help="seconds between reads when watching")
            sub.add_argument("--timeout", type=float, default=0, help="stop watching after this many seconds")
        if name == "promote":
            sub.add_argument("--full", action="store_true", help="skip the remaining steps after the next passed check")
    return top


def _rollout_path(namespace: str, name: str | None = None) -> str:
    base = f"/apis/{models.GROUP}/{models.VERSION}/namespaces/{namespace}/{models.PLURAL}"
    return base if name is None else f"{base}/{name}"


class Session:
    """The cluster as this command sees it, with kubectl's namespace rules."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.connection = connecting.connect(args.kubeconfig, args.context, args.namespace)
        self.client = connecting.Client(self.connection)
        self.namespace = self.connection.namespace

    def rollout(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.client.get(_rollout_path(self.namespace, name))
        return found

    def deployment(self, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self.client.get(f"/apis/apps/v1/namespaces/{self.namespace}/deployments/{name}")
            return found
        except connecting.ApiError:  # images are a courtesy: no access to Deployments still shows the rollout
            return None


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _get_lines(session: Session, name: str) -> list[str]:
    body = session.rollout(name)
    spec = body.get("spec")
    target = (spec.get("targetRef") or {}).get("name") if isinstance(spec, dict) else None
    primary = session.deployment(f"{target}-primary") if target else None
    canary = session.deployment(f"{target}-canary") if target else None
    return rendering.get(body, _now(), primary, canary)


class Screen:
    """Redraws a frame in place without clearing the screen first, so nothing flickers.

    On a terminal, the cursor goes home, every line is rewritten and cleared to
    its end, and whatever the previous (longer) frame left below is cleared.
    Elsewhere (a pipe, a log) each changed frame is printed after a blank line.
    """

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self.last: list[str] | None = None

    def draw(self, lines: list[str]) -> None:
        if lines == self.last:
            return
        if self.tty:
            if self.last is None:
                self.out.write("\x1b[2J")
            self.out.write("\x1b[H" + "".join(f"{line}\x1b[K\n" for line in lines) + "\x1b[J")
        else:
            if self.last is not None:
                self.out.write("\n")
            self.out.write("".join(f"{line}\n" for line in lines))
        self.out.flush()
        self.last = lines


def _watch(session: Session, args: argparse.Namespace, out: TextIO, sleep: Callable[[float], None]) -> int:
    screen = Screen(out)
    deadline = time.monotonic() + args.timeout if args.timeout > 0 else None
    try:
        while True:
            try:
                screen.draw(_get_lines(session, args.name))
            except connecting.UnreachableError as exc:  # keep watching through a blip; say so on the last line
                screen.draw([*(screen.last or []), f"(cannot read: {exc})"])
            if deadline is not None and time.monotonic() >= deadline:
                return 0
            sleep(args.interval)
    except KeyboardInterrupt:
        return 0


def _request(session: Session, args: argparse.Namespace, out: TextIO) -> int:
    key = REQUESTS[args.command]
    value = "full" if getattr(args, "full", False) else "true"
    # Read first: kubectl's own "not found" for a missing rollout, instead of a patch error.
    session.rollout(args.name)
    session.client.patch(_rollout_path(session.namespace, args.name), {"metadata": {"annotations": {key: value}}})
    what = "promote --full" if value == "full" else args.command
    out.write(
        f"{models.KIND.lower()}.{models.GROUP}/{args.name} {what} requested ({key}={value});"
        f" the operator acknowledges it in status.lastRequest\n"
    )
    return 0


def run(argv: Sequence[str], out: TextIO, err: TextIO, sleep: Callable[[float], None] = time.sleep) -> int:
    """One invocation; answers the exit code."""
    args_list = list(argv)
    known = set(HELP)
    first = next((a for a in args_list if not a.startswith("-")), None)
    if first is not None and first not in known:
        err.write(f'error: unknown command "{first}" for "kubectl canary"\nRun \'kubectl canary --help\' for usage.\n')
        return 1
    try:
        args = parser().parse_args(args_list)
    except UsageError as exc:
        err.write(f"error: {exc}\nRun 'kubectl canary --help' for usage.\n")
        return 1
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    if args.command is None:
        parser().print_help(out)
        return 0
    try:
        session = Session(args)
        if args.command == "get":
            if args.watch:
                return _watch(session, args, out, sleep)
            out.write("\n".join(_get_lines(session, args.name)) + "\n")
        elif args.command == "list":
            namespace = None if args.all_namespaces else session.namespace
            path = (
                f"/apis/{models.GROUP}/{models.VERSION}/{models.PLURAL}"
                if namespace is None
                else _rollout_path(namespace)
            )
            items = session.client.get(path).get("items") or []
            if not items:
                err.write(f"No resources found{'' if namespace is None else f' in {namespace} namespace'}.\n")
                return 0
            out.write("\n".join(rendering.listing(items, _now(), args.all_namespaces)) + "\n")
        elif args.command == "history":
            out.write("\n".join(rendering.history(session.rollout(args.name))) + "\n")
        elif args.command == "explain":
            out.write("\n".join(rendering.explain(session.rollout(args.name))) + "\n")
        else:
            return _request(session, args, out)
        return 0
    except connecting.ApiError as exc:
        if exc.code == 404 and getattr(args, "name", None):
            err.write(f'Error from server (NotFound): {RESOURCE} "{args.name}" not found\n')
        else:
            err.write(f"Error from server ({exc.reason or exc.code}): {exc.message}\n")
        return 1
    except (connecting.ConfigError, connecting.UnreachableError) as exc:
        err.write(f"error: {exc}\n")
        return 1


def main() -> None:
    sys.exit(run(sys.argv[1:], sys.stdout, sys.stderr))
