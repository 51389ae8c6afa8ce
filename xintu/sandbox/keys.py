"""Key material for the sandbox, generated per process: nothing secret is ever stored in the repo."""
from __future__ import annotations

import base64
import secrets
import string
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


def rsa_keypair(bits=2048) -> tuple[str, str]:
    """(private PKCS#8 PEM, public SubjectPublicKeyInfo PEM) — the formats wechatpayv3 loads."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


def platform_certificate(days: int = 1825) -> tuple[str, str, int]:
    """(private PKCS#8 PEM, self-signed X.509 PEM, serial number) of a WeChat Pay platform certificate: a key
    pair of its own (not the public-key mode's), valid from yesterday for ``days``."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tenpay.com"),
                         x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Tenpay.com CA Center (sandbox)"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com sandbox platform certificate")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=days)).sign(key, hashes.SHA256()))
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return private, cert.public_bytes(serialization.Encoding.PEM).decode(), cert.serial_number


def apiv3_key() -> str:
    """APIv3 keys are 32 ASCII characters (used directly as the AES-256 key)."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(32))


def encoding_aes_key() -> str:
    """The 43-character EncodingAESKey of an official account (base64 of 32 bytes without '=')."""
    return base64.b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def serial_no() -> str:
    return secrets.token_hex(20).upper()
