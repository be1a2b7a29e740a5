"""fedcmi_tff.preparation package: offline conversion of raw downloads to the prepared format."""
