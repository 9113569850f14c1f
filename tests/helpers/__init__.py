"""Test-only helpers (fixtures that build small models and data); importable because tests/ is on sys.path."""
