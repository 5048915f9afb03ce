"""Placeholder webhook receiver; see webhook/app.py."""
