"""The plain reference of the benches: the shortest idiomatic Flask-SocketIO chat, no persistence.

Clients join a room and whatever one sends is broadcast to the room through the Redis message
queue. bench/stacks.py runs it under gunicorn with the gevent-websocket worker (one worker, 10000
connections, as a realtime replica) and PLAIN_REDIS_URL set; bench/compare.py and
bench/persistence.py use it as their reference.
"""
import os

from flask import Flask
from flask_socketio import SocketIO, emit, join_room

# The tutorial shape on purpose (module-level app, configured at import): it is the baseline.
app = Flask(__name__)
socketio = SocketIO(app, message_queue=os.environ.get("PLAIN_REDIS_URL"), channel="plain-bench")


@socketio.on("join", namespace="/chat")
def join(data):
    """Join the room named in the payload."""
    join_room(data["room"])
    return {"ok": True}


@socketio.on("send", namespace="/chat")
def send(data):
    """Broadcast the payload to its room, the sender included (as realtime does)."""
    emit("message", data, to=data["room"])
    return {"ok": True}
