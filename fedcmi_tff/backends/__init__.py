"""fedcmi_tff.backends package."""
