"""Stacks: a Compose file's services deployed, diffed and removed together (docs/stacks.md)."""
