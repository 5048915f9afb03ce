"""The message queue between replicas: the Redis queue, per-room channels, in-order delivery."""
