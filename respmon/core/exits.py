"""Exit codes the worker's child and its supervisor agree on (`respmon.supervise`)."""

STALL_EXIT = 75
"""The stall watch found a partition whose stream made no progress: start a fresh worker."""
CRASH_EXIT = 70
"""A batch failed with an error the worker cannot retry in place: start a fresh worker."""
CONFIG_EXIT = 2
"""A configuration error (rules file, settings): starting again cannot help; the supervisor passes it on."""
