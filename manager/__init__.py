"""kube's manager: accepts work, schedules it, and tracks its state."""
