"""The cluster: the client layer, rollouts, and what meshlift adds beside the Helm release."""
