"""Key material for the sandbox, generated per process: nothing secret is ever stored in the repo."""
from __future__ import annotations

import base64
import secrets
import string

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def rsa_keypair(bits=2048) -> tuple[str, str]:
    """(private PKCS#8 PEM, public SubjectPublicKeyInfo PEM) — the formats wechatpayv3 loads."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


def apiv3_key() -> str:
    """APIv3 keys are 32 ASCII characters (used directly as the AES-256 key)."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(32))


def encoding_aes_key() -> str:
    """The 43-character EncodingAESKey of an official account (base64 of 32 bytes without '=')."""
    return base64.b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def serial_no() -> str:
    return secrets.token_hex(20).upper()
