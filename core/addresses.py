"""The one canonical form of an email address and of a phone number, used wherever one is stored or compared.

Why one form: consent is decided by comparing addresses (the suppression list, an unsubscribe or a
hard bounce recorded for an address), and the message goes to whatever the SMTP client or the SMS
provider reads out of the stored value. If two spellings of one mailbox were both accepted
(`ADA@Example.com`, `Ada <ada@example.com>`), a rule recorded under one spelling would not match
the other, yet both would reach the same inbox. So every door (customer create, update and import,
the suppression list, lookups) turns what it is given into this single form or refuses it, and the
database only ever holds the canonical form.

Email rules:
- The value must be a bare address (an RFC 5321 addr-spec): no display name, no angle brackets, no
  comment, no quoted local part, no IP-literal domain. Those are refused, not rewritten: a caller
  who sent `Ada <ada@example.com>` has a bug worth hearing about, and guessing which part is the
  address is exactly the ambiguity that let messages slip past the list.
- Surrounding whitespace (a CSV cell, a pasted value) is trimmed; whitespace inside is refused.
- Syntax is checked by the `email-validator` library, without DNS (`check_deliverability=False`):
  a request must not wait on, or be decided by, someone else's name server.
- Case: the domain is case-insensitive by definition and is stored in its ASCII (IDNA) form, so
  `bücher.de` and `xn--bcher-kva.de` are one domain. The local part is case-sensitive on paper, but
  every real mailbox provider treats it case-insensitively, and a suppression must never be
  bypassed by case: it is lower-cased too. (Nothing else is folded: dots and `+tags` are kept,
  since providers disagree about them.)

Phone rules: E.164 (`+`, country code, number; 7 to 15 digits), checked with `phonenumbers`
(Google's libphonenumber metadata): the country calling code must exist and the length must be one
a number of that country can have. The stored form is the library's E.164 formatting, so a number
written with its national trunk prefix (`+44 0 7700 900123` as `+4407700900123`) becomes the one
number it dials (`+447700900123`).
"""

import re
from functools import lru_cache

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, field_validator

MAX_EMAIL_LENGTH = 320
E164 = re.compile(r"\+[1-9]\d{6,14}")

# RFC 5322 dot-atom with ASCII atext only: a local part of this shape is always valid (up to 64
# characters), so for these the library is asked about the domain alone, once per domain.
_PLAIN_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
MAX_LOCAL_LENGTH = 64
MAX_ADDRESS_LENGTH = 254  # what fits in an SMTP path; the library refuses longer addresses too

# Characters that mean the value is more than a bare address; each gets a message saying why.
_DISPLAY_FORM = re.compile(r"[<>]")
_COMMENT = re.compile(r"[()]")
_INNER_SPACE = re.compile(r"\s")

_IMPOSSIBLE = {
    phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: "has no such country calling code",
    phonenumbers.ValidationResult.TOO_SHORT: "is too short for its country",
    phonenumbers.ValidationResult.TOO_LONG: "is too long for its country",
    phonenumbers.ValidationResult.INVALID_LENGTH: "has a length no number of its country has",
    phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "is a local number, not a full international one",
}


def canonical_email(value: str) -> str:
    """The stored form of an email address; ValueError (with the reason) for anything else."""
    address = value.strip()
    if not address:
        raise ValueError("email is empty")
    if len(address) > MAX_EMAIL_LENGTH or "\x00" in address:
        raise ValueError("not a valid email address")
    if _DISPLAY_FORM.search(address):
        raise ValueError(
            "email must be a bare address like ada@example.com, without a display name or angle brackets"
        )
    if _COMMENT.search(address):
        raise ValueError("email must be a bare address like ada@example.com, without a (comment)")
    if _INNER_SPACE.search(address):
        raise ValueError("email must not contain whitespace")
    local, at, domain = address.rpartition("@")
    if at and len(local) <= MAX_LOCAL_LENGTH and _PLAIN_LOCAL.fullmatch(local):
        canonical = f"{local.lower()}@{_canonical_domain(domain)}"
        if len(canonical) > MAX_ADDRESS_LENGTH:
            raise ValueError("not a valid email address: The email address is too long.")
        return canonical
    return _validated(address)


def _validated(address: str) -> str:
    """The library's verdict on a whole address (any local part it allows, Unicode included)."""
    try:
        valid = validate_email(address, check_deliverability=False)
    except EmailNotValidError as err:
        raise ValueError(f"not a valid email address: {err}") from None
    return f"{valid.local_part.lower()}@{valid.ascii_domain.lower()}"


@lru_cache(maxsize=4096)
def _canonical_domain(domain: str) -> str:
    """The ASCII form of a domain, as the library decides it for an address at that domain.

    Checking a domain costs the library ~0.2 ms (a Unicode table lookup per character); an import
    of 100,000 customers mostly repeats a few hundred domains, so each is checked once.
    """
    return _validated(f"a@{domain}").removeprefix("a@")


def canonical_phone(value: str) -> str:
    """The stored form of a phone number (E.164); ValueError (with the reason) for anything else."""
    number_text = value.strip()
    if not E164.fullmatch(number_text):
        raise ValueError("phone must be E.164, like +27821234567")
    try:
        number = phonenumbers.parse(number_text)
    except phonenumbers.NumberParseException:
        raise ValueError(f"phone {_IMPOSSIBLE[phonenumbers.ValidationResult.INVALID_COUNTRY_CODE]}") from None
    verdict = phonenumbers.is_possible_number_with_reason(number)
    if verdict != phonenumbers.ValidationResult.IS_POSSIBLE:
        raise ValueError(f"phone {_IMPOSSIBLE.get(verdict, 'is not a possible number')}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


class AddressLists(BaseModel):
    """Mixin for a model with `emails` and `phones` lists (seed addresses, test-send targets):
    each address is put into its canonical form, and one that has none fails validation."""

    @field_validator("emails", check_fields=False)
    @classmethod
    def _canonical_emails(cls, value: list[str]) -> list[str]:
        return [canonical_email(v) for v in value]

    @field_validator("phones", check_fields=False)
    @classmethod
    def _canonical_phones(cls, value: list[str]) -> list[str]:
        return [canonical_phone(v) for v in value]
