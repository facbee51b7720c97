"""respmon: home respiratory monitoring for people with ALS. Shared plumbing (settings, database, CLI)."""
