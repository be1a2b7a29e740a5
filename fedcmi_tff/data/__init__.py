"""fedcmi_tff.data package."""
