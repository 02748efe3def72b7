"""The pure model: references, digests, media types, manifests, lock, charts, signatures."""
