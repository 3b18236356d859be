"""The cluster-wide operator: injects the key agent, validates bindings, keeps their status."""
