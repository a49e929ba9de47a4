"""The Panel dashboard: the view-model (``TraceFeed``) with its table bookkeeping, stream follower,
stats, wording and toast digest; the views; and the per-session assembly (``session``) used by
``panel serve dashboard/app.py`` and by notebooks. Never imports the server side."""
