"""fedcmi_tff.algorithms: one client objective per method family, and the method registry."""
