#!/usr/bin/env python3
"""Drives the IMAP relay end to end (crates/proxy/tests/relay_e2e.rs).

usage: relay_e2e.py CONFIG_JSON   (host, direct, proxy, ca, user, password,
                                   canary, run)
Seeds two messages directly on Dovecot, then through the proxy: a failed
login, LOGIN, SELECT INBOX, UID FETCH BODY.PEEK[], UID STORE +FLAGS
(\\Deleted), EXPUNGE, UID MOVE to Trash, APPEND to Sent, LOGOUT. Prints one
JSON object on the last line of stdout.
"""
import imaplib
import json
import ssl
import sys

cfg = json.loads(sys.argv[1])
ctx = ssl.create_default_context(cafile=cfg["ca"])
user, pw, canary = cfg["user"], cfg["password"], cfg["canary"]
out = {}


def msg(n):
    return (
        "From: %s\r\nTo: %s\r\nSubject: %s subject %d\r\n"
        "Message-ID: <m%d-%s@hopital.test>\r\n\r\nBody %s line %d\r\n"
        % (user, user, canary, n, n, cfg["run"], canary, n)
    ).encode()


def appenduid(data):
    # [b'[APPENDUID 1700000000 1] Append completed.']
    return data[0].decode().split()[2].rstrip("]")


direct = imaplib.IMAP4_SSL(cfg["host"], cfg["direct"], ssl_context=ctx)
direct.login(user, pw)
out["uids"] = [appenduid(direct.append("INBOX", None, None, msg(n))[1]) for n in (1, 2)]
direct.logout()

bad = imaplib.IMAP4_SSL(cfg["host"], cfg["proxy"], ssl_context=ctx)
out["capabilities"] = list(bad.capabilities)
try:
    bad.login(user, "wrong-" + pw)
    out["bad_login"] = "OK?!"
except imaplib.IMAP4.error as e:
    out["bad_login"] = str(e)
bad.logout()

m = imaplib.IMAP4_SSL(cfg["host"], cfg["proxy"], ssl_context=ctx)
out["login"] = m.login(user, pw)[0]
out["select"] = m.select("INBOX")[0]
typ, data = m.uid("FETCH", out["uids"][0], "(BODY.PEEK[])")
out["fetch"] = typ
out["fetched_canary"] = canary.encode() in data[0][1]
out["store"] = m.uid("STORE", out["uids"][0], "+FLAGS", "(\\Deleted)")[0]
out["expunge"] = m.expunge()[0]
out["move"] = m.uid("MOVE", out["uids"][1], "Trash")[0]
typ, data = m.append("Sent", None, None, msg(3))
out["append"] = typ
out["append_uid"] = appenduid(data)
m.logout()
print(json.dumps(out))
