"""The dashboard's snapshot, admin-only access, and demo admins."""
from realtime.extensions import socketio


def demo_token(client, name):
    return client.post("/api/auth/token", json={"username": name}).get_json()["access_token"]


def test_demo_admins_get_the_admin_role_and_others_do_not(app, client):
    admin = socketio.test_client(app, namespace="/admin", auth={"token": demo_token(client, "admin")})
    user = socketio.test_client(app, namespace="/admin", auth={"token": demo_token(client, "ana")})
    assert admin.is_connected("/admin") and not user.is_connected("/admin")


def test_snapshot_over_http_and_socket(app, client, chat):
    chat("Ana")
    headers = {"Authorization": "Bearer " + demo_token(client, "admin")}
    assert client.get("/api/admin/dashboard",
                      headers={"Authorization": "Bearer " + demo_token(client, "ana")}).status_code == 403
    snapshot = client.get("/api/admin/dashboard", headers=headers).get_json()
    assert snapshot["redis"]["ok"] is True and snapshot["instance"] == "unit-1"
    [replica] = snapshot["replicas"]
    assert replica["id"] == "unit-1" and replica["clients"] == 1 and replica["memory_rss"] > 0
    assert {"messages_in_per_s", "messages_out_per_s", "events_per_s", "errors_total", "uptime_s"} <= set(replica)
    assert snapshot["gone"] == [] and snapshot["webhooks"] == {"backlog": None, "breakers": {}}
    admin = socketio.test_client(app, namespace="/admin", auth={"token": demo_token(client, "admin")})
    ack = admin.emit("snapshot", {}, namespace="/admin", callback=True)
    assert ack["ok"] is True and ack["snapshot"]["clients_total"] == 1



def test_dashboard_page_and_assets_are_served(client):
    page = client.get("/dashboard")
    assert page.status_code == 200 and b"/static/dashboard.js" in page.data
    assert b"<script>" not in page.data  # CSP: no inline script
    for asset in ("/static/dashboard.js", "/static/dashboard.css"):
        assert client.get(asset).status_code == 200
