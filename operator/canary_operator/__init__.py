"""canary-operator: progressive delivery for Kubernetes Deployments.

Layers, from the outside in: ``main`` (Kopf registrations) -> ``reconciling``
(one tick with its I/O) -> ``rollouts`` (the pure state machine) and
``judging`` (the pure analysis judge); ``routing`` and ``providers`` hold one
module per traffic router and metric provider; ``models`` is the API.
"""
