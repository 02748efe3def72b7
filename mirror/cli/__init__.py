"""The mirror command line: options, commands, output and progress (click and rich)."""
