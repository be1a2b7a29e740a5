"""fedcmi_tff.learning package."""
