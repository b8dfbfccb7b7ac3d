"""Every state change of the underwriting app, by module: ``manuals``, ``requests``, ``pipeline``,
``webhooks`` and ``state`` (the guarded transitions). Views, admin, commands and tasks call these."""
