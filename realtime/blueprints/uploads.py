"""File uploads for image and file messages, and serving them back safely."""
from flask import Blueprint, current_app, jsonify, request, send_file
from werkzeug.exceptions import RequestEntityTooLarge

from ..errors import AppError, ValidationError
from ..extensions import limiter
from ..services.uploads import UploadService, attachment, too_large

bp = Blueprint("uploads", __name__)

MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the file itself
CACHE_SECONDS = 365 * 24 * 3600  # names are content hashes: a name never changes content
# Even if a browser is tricked into rendering an upload, it gets no script, no origin, no fetches.
FILE_CSP = "sandbox; default-src 'none'"


def service() -> UploadService:
    """This app's upload store."""
    return current_app.extensions["realtime.uploads"]


@bp.post("/api/uploads")
def upload():
    """Store the multipart field `file`; answer the body of an image/file message."""
    # Before the body is read: an anonymous or revoked caller never costs us the upload.
    current_app.extensions["realtime"].verifier.from_header(request.headers.get("Authorization"))
    uploads = service()
    # The app-wide MAX_CONTENT_LENGTH stays small for every other route; only this one takes files.
    request.max_content_length = uploads.max_bytes + MULTIPART_OVERHEAD
    try:
        file = request.files.get("file")
    except RequestEntityTooLarge:
        raise too_large(uploads.max_bytes) from None
    if file is None:
        raise ValidationError("invalid_payload", "the multipart/form-data field 'file' is required")
    return jsonify(attachment(uploads.save(file.stream, file.filename))), 201


@bp.get("/uploads/<name>")
@limiter.exempt  # immutable, content-addressed files: a page of images must not trip the limit
def download(name: str):
    """An upload as the type detected when it was stored; images inline, anything else as a download."""
    uploads = service()
    meta = uploads.lookup(name)
    if meta is None:
        raise AppError("not_found", "no such upload", 404)
    response = send_file(uploads.path(meta["file"]), mimetype=meta["mime"], download_name=meta["name"],
                         as_attachment=not meta["mime"].startswith("image/"), max_age=CACHE_SECONDS)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = FILE_CSP
    response.cache_control.immutable = True
    return response
