"""Where images live: the source and destination protocols and one module per place."""
