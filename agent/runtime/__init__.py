"""What the operator and the key agent both run on: retry delays, a small HTTP server, logs.

Nothing here imports either process: they are siblings that share this floor.
"""
