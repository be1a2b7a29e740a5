"""fedcmi_tff test suite."""
