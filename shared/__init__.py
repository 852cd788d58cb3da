"""kube's shared package: wire models, AMQP topology and plumbing, settings, errors."""
