"""Membership: WeChat users, QR binding, the credits ledger and WeChat Pay orders."""
