"""The resident page: residents sign in with their ID and a one-time code sent to the phone the bureau
holds, confirm or decline requests for their consent, see every request made about them, withdraw
consent and download an access report (PIPL Art. 29, 44-45). Served by the web zone under the bureau's
own domain; the phone number and the codes stay in the data domain (datadomain.residents)."""
