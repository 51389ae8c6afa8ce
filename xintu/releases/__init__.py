"""APP releases: upload an installer, find the latest per platform, count downloads."""
