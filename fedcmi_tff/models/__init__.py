"""fedcmi_tff.models package."""
