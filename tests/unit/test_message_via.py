"""Messages a server sent carry `via` ("api", "emitter"); users' messages carry none."""
from flask_jwt_extended import create_access_token

from realtime.emitter import Emitter

from test_chat import call, events


def test_api_message_is_marked_live_in_history_and_in_recovery(client, chat, token):
    ana = chat("Ana")
    call(ana, "join", {"room": "ops"})
    service = {"Authorization": "Bearer " + token("deployer", roles=["service"])}
    posted = client.post("/api/rooms/ops/messages", json={"body": "deploy finished"}, headers=service)
    assert posted.status_code == 201 and posted.get_json()["message"]["via"] == "api"
    [live] = events(ana, "message")
    assert live["via"] == "api" and live["from"] == {"id": "system", "name": "system"}
    page = client.get("/api/rooms/ops/messages", headers=service).get_json()["messages"]
    assert [m.get("via") for m in page] == ["api"]
    assert call(chat("Bo"), "join", {"room": "ops", "since": 0})["missed"][0]["via"] == "api"


def test_a_users_message_has_no_via(client, chat, token):
    ana = chat("Ana")
    call(ana, "join", {"room": "lobby"})
    sent = call(ana, "send", {"room": "lobby", "body": "hi"})["message"]
    assert "via" not in sent and "via" not in events(ana, "message")[0]
    service = {"Authorization": "Bearer " + token("deployer", roles=["service"])}
    [stored] = client.get("/api/rooms/lobby/messages", headers=service).get_json()["messages"]
    assert "via" not in stored


def service_headers(app):
    """Authorization for the server API: a token with the `service` role."""
    with app.app_context():
        token = create_access_token(identity="deployer", additional_claims={"name": "deployer",
                                                                           "roles": ["service"]})
    return {"Authorization": "Bearer " + token}


def test_emitter_message_is_marked_and_stored_so(app_factory_with, redis_url):
    emitter = Emitter(redis_url)
    try:
        sent = emitter.send(room="ops", body="from cron")
    finally:
        emitter.close()
    assert sent["via"] == "emitter"
    app = app_factory_with(REDIS_URL=redis_url)
    page = app.test_client().get("/api/rooms/ops/messages", headers=service_headers(app))
    [stored] = page.get_json()["messages"]
    assert stored["via"] == "emitter" and stored["body"] == "from cron"
