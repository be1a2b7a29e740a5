"""fedcmi_tff.programs package."""
