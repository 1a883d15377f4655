"""Bots that answer end users on their own: flow definitions and their answers."""
