"""asv benchmark suite of lowrank_core (configuration: asv.conf.json at the repository root)."""
