"""kube's worker: consumes its node queue and drives the container engine."""
