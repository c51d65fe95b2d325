"""Password policy: strength estimated by zxcvbn (Dropbox's estimator), not derived from the user.

A password must reach ``password_min_score`` (0–4, default 3: "safely unguessable" against an
online attack with throttling) once the user's own words are counted as known: username,
display name, phone and the venue's name; a password containing one of them (4+ letters or
digits, case and punctuation ignored) is refused outright. ``1234567890``, ``password12`` or the
username fail.
Only the first 72 characters are scored (zxcvbn's own limit; longer passphrases are rarely weak).
"""

from __future__ import annotations

import re

from zxcvbn import zxcvbn

from backend.core.errors import Invalid

SCORED_CHARS = 72
_WORDS = re.compile(r"[^\W_]+")


def check_password(password: str, *, min_score: int, field: str, personal: list[str | None]) -> None:
    """422 naming ``field`` when ``password`` is too weak or built from ``personal`` words."""
    inputs: list[str] = []
    for value in personal:
        if value:
            inputs.append(value.lower())
            inputs.extend(word.lower() for word in _WORDS.findall(value) if len(word) >= 3)
    folded = "".join(_WORDS.findall(password.lower()))
    for word in inputs:
        plain = "".join(_WORDS.findall(word))
        if len(plain) >= 4 and plain in folded:
            raise Invalid("the password must not be built from your name, username, phone or venue", field=field)
    result = zxcvbn(password[:SCORED_CHARS], user_inputs=inputs)
    if result["score"] < min_score:
        feedback = result.get("feedback") or {}
        hint = feedback.get("warning") or " ".join(feedback.get("suggestions") or []) or "too easy to guess"
        raise Invalid(
            f"password too weak (strength {result['score']} of 4, needs {min_score}): {hint}".rstrip(": "),
            field=field,
        )
