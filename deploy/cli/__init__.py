"""The deploy command line: options, one module per command, rollout progress (click and rich)."""
