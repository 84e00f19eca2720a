"""Images for layouts: checked by their content (PNG, JPEG, GIF, WebP; never SVG, which can hold
scripts), bounded in size, kept in the database and addressed by a public URL with their digest."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import defer

from mailapp.errors import ValidationError
from mailapp.extensions import db
from mailapp.models import LayoutImage

FILENAME_MAX_LENGTH = 255


@dataclass(frozen=True)
class ImageKind:
    content_type: str
    extension: str


# Told by the file's first bytes, whatever its name or the type the browser claims.
_PNG = ImageKind("image/png", "png")
_JPEG = ImageKind("image/jpeg", "jpg")
_GIF = ImageKind("image/gif", "gif")
_WEBP = ImageKind("image/webp", "webp")
EXTENSIONS = frozenset(kind.extension for kind in (_PNG, _JPEG, _GIF, _WEBP))


def max_image_bytes() -> int:
    return int(current_app.config["LAYOUT_IMAGE_MAX_BYTES"])


def image_kind(data: bytes) -> ImageKind | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return _PNG
    if data.startswith(b"\xff\xd8\xff"):
        return _JPEG
    if data.startswith((b"GIF87a", b"GIF89a")):
        return _GIF
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _WEBP
    return None


def store_image(data: bytes, filename: str | None) -> LayoutImage:
    """Keep an uploaded image (the same content uploaded again is the same image). `data` may be one
    byte past the limit: the caller reads no more than that. Raises ValidationError saying what is wrong."""
    limit = max_image_bytes()
    name = (filename or "image").strip()[:FILENAME_MAX_LENGTH] or "image"
    if len(data) > limit:
        raise _refused(
            f"'{name}' is larger than the image limit of {limit:,} bytes (LAYOUT_IMAGE_MAX_BYTES)."
        )
    if not data:
        raise _refused(f"'{name}' is empty.")
    kind = image_kind(data)
    if kind is None:
        what = "an SVG image (SVG can carry scripts)" if _looks_like_svg(data) else "not a supported image"
        raise _refused(f"'{name}' is {what}: upload a PNG, JPEG, GIF or WebP image.")
    digest = hashlib.sha256(data).hexdigest()
    existing = db.session.scalar(select(LayoutImage).where(LayoutImage.digest == digest).limit(1))
    if existing is not None:
        return existing
    image = LayoutImage(
        digest=digest, content_type=kind.content_type, extension=kind.extension, filename=name,
        size=len(data), data=data,
    )
    db.session.add(image)
    db.session.flush()
    return image


def find_image(image_id: int, digest: str, extension: str) -> LayoutImage | None:
    """The image a public URL names: id, digest and extension must all match."""
    image = db.session.get(LayoutImage, image_id)
    if image is None or image.digest != digest or image.extension != extension:
        return None
    return image


def recent_images(limit: int = 200) -> list[LayoutImage]:
    """The newest images, without their bytes (the editor's asset manager lists their URLs)."""
    statement = (
        select(LayoutImage).options(defer(LayoutImage.data)).order_by(LayoutImage.id.desc()).limit(limit)
    )
    return list(db.session.scalars(statement))


def _looks_like_svg(data: bytes) -> bool:
    return b"<svg" in data[:4096].lower()


def _refused(message: str) -> ValidationError:
    return ValidationError(message, [{"field": "file", "message": message}])
