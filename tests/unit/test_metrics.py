"""GET /metrics parses as Prometheus text, and its counters move when events happen."""
import pytest
from prometheus_client.parser import text_string_to_metric_families

from realtime.ops.metrics import url_label
from realtime.services.webhooks import WebhookWorker

from test_chat import call


def scrape(client) -> dict:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0)


def test_counters_move_with_events(app, client, chat):
    before = scrape(client)
    sio = chat("Ana")
    call(sio, "join", {"room": "r"})
    call(sio, "send", {"room": "r", "body": "hi"})
    call(sio, "send", {"room": "nowhere", "body": "x"})
    after = scrape(client)
    assert value(after, "realtime_events_total", namespace="/chat", event="send", outcome="ok") == 1
    assert value(after, "realtime_events_total", namespace="/chat", event="send", outcome="not_joined") == 1
    assert value(after, "realtime_messages_delivered_total") - value(before, "realtime_messages_delivered_total") == 1
    assert value(after, "realtime_delivery_latency_seconds_count") >= 1
    assert value(after, "realtime_connections", namespace="/chat", transport="polling") == 1
    assert ("realtime_greenlets", ()) in after  # 0 here: the test app runs on threads
    assert value(after, "process_resident_memory_bytes") > 0


def test_rate_limit_rejections_are_counted(app_factory_with, token):
    from realtime.extensions import socketio
    app = app_factory_with(RATE_LIMITS="join=1/minute")
    sio = socketio.test_client(app, namespace="/chat", auth={"token": token("Ana")})
    for _ in range(2):
        sio.emit("join", {"room": "r"}, namespace="/chat", callback=True)
    samples = scrape(app.test_client())
    assert value(samples, "realtime_rate_limited_total", event="join") == 1


def test_redis_calls_are_timed(app_factory_with, redis_url):
    app = app_factory_with(REDIS_URL=redis_url)
    client = app.test_client()
    client.get("/readyz")
    samples = scrape(client)
    assert value(samples, "realtime_store_call_seconds_count", operation="ping") >= 1


def test_webhook_breaker_labels_carry_no_credentials_or_query(app_factory_with):
    endpoint = "https://hook-user:hook-pass@hooks.example:8443/in?token=querysecret#frag"
    app = app_factory_with(WEBHOOK_URLS=endpoint, WEBHOOK_SECRET="w" * 32)
    services = app.extensions["realtime"]
    services.webhook_worker = WebhookWorker(services.store, services.webhooks.policy, "unit-1",
                                            spawn=lambda *args: None)
    services.webhook_worker.breaker(endpoint)
    text = app.test_client().get("/metrics").get_data(as_text=True)
    assert 'realtime_webhook_breaker_open{endpoint="https://hooks.example:8443/in"} 0.0' in text
    for secret in ("hook-user", "hook-pass", "querysecret", "token=", "frag"):
        assert secret not in text


@pytest.mark.parametrize("url, label", [
    ("http://10.0.0.5/hook", "http://10.0.0.5/hook"),
    ("https://:pw@[::1]:9000/h?x=1", "https://[::1]:9000/h"),
    ("https://u@h.example", "https://h.example"),
])
def test_url_label(url, label):
    assert url_label(url) == label
