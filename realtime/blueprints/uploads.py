"""File uploads for image and file messages, and serving them back to whoever may see them."""
from flask import Blueprint, current_app, jsonify, request, send_file
from werkzeug.exceptions import RequestEntityTooLarge

from ..errors import AppError, ValidationError
from ..extensions import limiter
from ..services import validation
from ..services.uploads import MULTIPART_OVERHEAD, UploadService, attachment, too_large
from .guards import caller

bp = Blueprint("uploads", __name__)

CACHE_SECONDS = 365 * 24 * 3600  # a name is never given to other content
# Even if a browser is tricked into rendering an upload, it gets no script, no origin, no fetches.
FILE_CSP = "sandbox; default-src 'none'"


def service() -> UploadService:
    """This app's upload store."""
    return current_app.extensions["realtime.uploads"]


@bp.post("/api/uploads")
def upload():
    """Store the multipart field `file` for the room in field `room`; answer the body of an image/file message."""
    services = current_app.extensions["realtime"]
    # Before the body is read: an anonymous or revoked caller never costs us the upload.
    principal = services.verifier.from_header(request.headers.get("Authorization"))
    uploads = service()
    # The app-wide MAX_CONTENT_LENGTH stays small for every other route; only this one takes files.
    request.max_content_length = uploads.max_bytes + MULTIPART_OVERHEAD
    declared = request.content_length
    if declared is not None and declared > request.max_content_length:
        raise too_large(uploads.max_bytes)  # before the quota: a refused size costs no upload
    uploads.charge(principal.id, declared)  # still before the body is read
    try:
        file, room = request.files.get("file"), request.form.get("room")
    except RequestEntityTooLarge:
        raise too_large(uploads.max_bytes) from None
    if room is None:
        raise ValidationError("invalid_payload", "the multipart/form-data field 'room' is required "
                              "(the room, or dm:<a>:<b> room, the file will be sent to)")
    room = services.access.check(principal, services.messages.room(room))
    if file is None:
        raise ValidationError("invalid_payload", "the multipart/form-data field 'file' is required")
    meta = uploads.save(file.stream, file.filename, room, principal.id, charged=declared is not None)
    return jsonify(attachment(meta)), 201


@bp.get("/uploads/<name>")
@limiter.exempt  # immutable files: a page of images must not trip the limit
def download(name: str):
    """An upload as the type detected when it was stored; images inline, anything else as a download.

    Files of public rooms are capability URLs (unguessable names); a private room's or a direct
    room's need a bearer token allowed in that room (or a server's credentials); legacy uploads
    (content-hash names, room unknown) any valid token.
    """
    uploads = service()
    meta = uploads.lookup(name)
    if meta is None:
        raise AppError("not_found", "no such upload", 404)
    restricted = meta["room"] is None or confined(meta["room"])
    if restricted:
        authorize(meta["room"])
    response = send_file(uploads.path(meta["file"]), mimetype=meta["mime"], download_name=meta["name"],
                         as_attachment=not meta["mime"].startswith("image/"), max_age=CACHE_SECONDS)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = FILE_CSP
    response.cache_control.immutable = True
    if restricted:  # never in a shared cache: it answered one caller's credentials
        response.cache_control.public = False
        response.cache_control.private = True
        response.vary.add("Authorization")
    return response


def confined(room: str) -> bool:
    """A room whose files only its members may fetch: private rooms and direct-message rooms."""
    return bool(validation.dm_users(room)) or current_app.extensions["realtime"].access.is_private(room)


def authorize(room: str | None) -> None:
    """The caller's credentials must let it read `room` (any valid token for a legacy upload)."""
    who = caller()
    if room is not None and not who.is_server:
        current_app.extensions["realtime"].access.check(who.principal, room)
