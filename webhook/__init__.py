"""The webhook testing service: a separate small Flask app that receives realtime's signed webhooks.

Signatures come from `realtime.signing` (sign/verify, standard library only), shared with the
realtime sender (`webhook.signing` re-exports it for one release);
`webhook.app.create_app` builds the receiver and its testing UI. Importing this package imports
neither Flask nor an app.
"""
