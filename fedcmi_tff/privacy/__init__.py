"""fedcmi_tff.privacy package."""
