"""Unbound extension objects; create_app binds them. Nothing here touches an app at import."""
from flask_jwt_extended import JWTManager
from flask_socketio import SocketIO

socketio = SocketIO()
jwt = JWTManager()
