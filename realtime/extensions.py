"""Unbound extension objects; create_app binds them. Nothing here touches an app at import."""
from flask_jwt_extended import JWTManager
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_socketio import SocketIO

socketio = SocketIO()
jwt = JWTManager()
limiter = Limiter(key_func=get_remote_address)
