"""Fake WeChat official-account and WeChat Pay v3 servers for tests and offline (embedded) use."""
