# One realtime replica: gunicorn with one gevent-websocket worker (config/gunicorn.conf.py).
# docker-compose.yml runs three of these behind nginx, and the webhook receiver from the same image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # Read by config/gunicorn.conf.py: listen on every interface of the container.
    REALTIME_HOST=0.0.0.0 \
    REALTIME_PORT=8000 \
    REALTIME_STATIC_DIR=/app/static \
    # Shared by every replica: docker-compose mounts one volume here.
    REALTIME_UPLOAD_DIR=/data/uploads

WORKDIR /app
COPY . /app
# gunicorn runs from /app (wsgi.py, config/, static/, webhook/). The dependencies come from the
# lock, every file checked against its hash (scripts/lock.sh writes it); then the project alone.
RUN pip install --require-hashes -r requirements.lock \
    && pip install --no-deps . \
    && useradd --create-home --uid 10001 realtime \
    && mkdir -p /data/uploads && chown realtime /data/uploads
# Not root; the home directory is where gunicorn would put its control socket.
USER realtime

EXPOSE 8000
# python:3.11-slim has no curl; the standard library is enough for a health probe.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]

CMD ["gunicorn", "-c", "config/gunicorn.conf.py", "wsgi:app"]
