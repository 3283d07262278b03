"""``kubectl canary``, the kubectl plugin: read and steer CanaryRollouts from a terminal.

It imports neither Kopf nor any other part of the operator's runtime: only the
API models, the standard library and PyYAML (to read the kubeconfig).
"""

from canary_operator.cli.commands import main, run

__all__ = ["main", "run"]
