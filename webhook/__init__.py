"""The webhook testing service: a separate small Flask app that receives realtime's signed webhooks.

`webhook.signing` (sign/verify, standard library only) is shared with the realtime sender;
`webhook.app.create_app` builds the receiver and its testing UI. Importing this package imports
neither Flask nor an app.
"""
