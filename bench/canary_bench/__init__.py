"""The test bench: emulated Kubernetes API, real Prometheus and simulated traffic."""
