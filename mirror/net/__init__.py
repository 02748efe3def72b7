"""HTTP plumbing under the transports: endpoints, credentials, auth, retries, rate limits."""
