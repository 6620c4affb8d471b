"""The SDK's session contract, run on every store the course builds (registry.py)."""
