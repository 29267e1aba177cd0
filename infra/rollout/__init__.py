"""The rollout command: ship one image tag safely (preview, confirm, roll, roll back on failure)."""
