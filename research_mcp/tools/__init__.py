"""Per-family domain code; see each module."""
