"""fedcmi_tff.losses package."""
