"""DKIM (RFC 6376) keys and signatures for tenants' email domains.

Keys are RSA 2048, generated here (`generate_key`) or uploaded as PEM (`load_key`); the private
key is stored sealed (core.secrets) and the public half is what the tenant publishes as
`<selector>._domainkey.<domain> TXT "v=DKIM1; k=rsa; p=<base64 DER>"` (`dns_record`).

Signing (`DkimSigner.sign`) uses dkimpy's own message parsing, canonicalization, header selection
and header folding, so the signature is exactly what dkimpy's verifier (and any receiver) checks;
only the RSA operation runs in OpenSSL through `cryptography` instead of dkimpy's pure-Python
arithmetic, which costs ~7 ms per signature on RSA 2048 (OpenSSL: ~0.3 ms) and would be the
largest CPU cost of sending. Canonicalization is relaxed for headers (relays refold them) and
simple for the body: our bodies are quoted-printable lines that relays leave alone, and relaxed
body canonicalization (regular expressions over the whole body) cost as much as the RSA operation.
The parsed key is kept in the signer, and signers are cached per identity by the send path, so a
key is parsed once per identity and worker, not per message (docs/tenants-and-providers.md has
the measured cost).
"""

import base64
import hashlib
import time
from dataclasses import dataclass

import dkim  # type: ignore[import-untyped]
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from dkim.canonicalization import CanonicalizationPolicy  # type: ignore[import-untyped]

KEY_BITS = 2048
MIN_UPLOAD_BITS = 1024  # receivers ignore shorter keys (RFC 8301)
MAX_UPLOAD_BITS = 4096
# What every signature covers: the fields a receiver shows or acts on, List-Unsubscribe included
# (RFC 8058 requires it to be signed for one-click unsubscribe to be honoured).
SIGNED_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"reply-to",
    b"mime-version",
    b"content-type",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
)
_CANON = CanonicalizationPolicy.from_c_value(b"relaxed/simple")


class DkimKeyError(ValueError):
    """An uploaded key that is not a usable RSA private key."""


def generate_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)


def load_key(pem: str) -> rsa.RSAPrivateKey:
    """An uploaded PEM (PKCS#1 or PKCS#8, unencrypted) RSA key of 1024 to 4096 bits."""
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as err:
        raise DkimKeyError("the key is not an unencrypted PEM private key") from err
    if not isinstance(key, rsa.RSAPrivateKey):
        raise DkimKeyError("the key is not an RSA key")
    if not MIN_UPLOAD_BITS <= key.key_size <= MAX_UPLOAD_BITS:
        raise DkimKeyError(f"the key has {key.key_size} bits; 1024 to 4096 are accepted")
    return key


def private_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def public_b64(key: rsa.RSAPrivateKey) -> str:
    """The `p=` tag: the public key's SubjectPublicKeyInfo DER, base64."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def record_name(selector: str, domain: str) -> str:
    return f"{selector}._domainkey.{domain}"


def record_value(public: str) -> str:
    return f"v=DKIM1; k=rsa; p={public}"


def record_key(txt: str) -> str | None:
    """The `p=` of a DKIM TXT record (whitespace inside the value ignored), or None."""
    tags: dict[str, str] = {}
    for part in txt.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            tags[name.strip().lower()] = "".join(value.split())
    if tags.get("v", "DKIM1") != "DKIM1" or tags.get("k", "rsa") != "rsa":
        return None
    return tags.get("p") or None


@dataclass(frozen=True)
class DkimSigner:
    """Signs messages for one domain and selector with one parsed key."""

    domain: str
    selector: str
    key: rsa.RSAPrivateKey

    @classmethod
    def from_pem(cls, domain: str, selector: str, pem: str) -> "DkimSigner":
        return cls(domain, selector, load_key(pem))

    def sign(self, message: bytes) -> bytes:
        """The message with its `DKIM-Signature` header prepended (CRLF line ends expected)."""
        return self.signature(message) + message

    def signature(self, message: bytes) -> bytes:
        """The `DKIM-Signature: ...\\r\\n` header field for `message` (rsa-sha256,
        relaxed/simple; the same steps as dkimpy's `DKIM.sign`)."""
        headers, body = dkim.rfc822_parse(message)
        present = {name.lower() for name, _ in headers}
        include = tuple(h for h in SIGNED_HEADERS if h in present)
        fields = [
            (b"v", b"1"),
            (b"a", b"rsa-sha256"),
            (b"c", b"relaxed/simple"),
            (b"d", self.domain.encode()),
            (b"s", self.selector.encode()),
            (b"t", str(int(time.time())).encode()),
            (b"h", b" : ".join(include)),
            (b"bh", base64.b64encode(hashlib.sha256(_CANON.canonicalize_body(body)).digest())),
            (b"b", b"0" * 60),  # b= folds onto its own line, so adding the signature refolds nothing
        ]
        name = b"DKIM-Signature"
        value = dkim.fold(b"; ".join(b"=".join(f) for f in fields), namelen=len(name))
        value = dkim.RE_BTAG.sub(b"\\1", value)
        hasher = dkim.HashThrough(hashlib.sha256())
        canonical = _CANON.canonicalize_headers(headers)
        dkim.hash_headers(hasher, _CANON, canonical, include, (name, b" " + value), {})
        signed = self.key.sign(hasher.digest(), padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
        fields[-1] = (b"b", base64.b64encode(signed))
        folded: bytes = dkim.fold(b"; ".join(b"=".join(f) for f in fields) + b"\r\n", namelen=len(name))
        return name + b": " + folded
