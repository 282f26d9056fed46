#!/usr/bin/env python3
"""A real mail client (Python's imaplib and smtplib) for the proxy's tests.

usage: mail_client.py SCENARIO CONFIG_JSON

CONFIG_JSON (a string, not a file) holds:
  host, imap, imaps, submission, submissions   where to connect (the mail
                                               servers directly, or the proxy)
  ca                                           CA file (PEM) to verify TLS with
  sender, recipient                            [address, password] pairs
  refused                                      an address the server refuses

Prints one JSON object (the outcome of every step) on the last line of
stdout; exits non-zero on the first unexpected failure, with the reason on
stderr. Scenarios:

  smoke   IMAP STARTTLS and IMAPS logins, a failed login, a send by
          submission (STARTTLS) and by submissions (implicit TLS) from sender
          to recipient, a send to the refused recipient, wait for delivery,
          FETCH headers, COPY one message to Trash, STORE \\Deleted + EXPUNGE
          the other.

Only the standard library: python3 is the only requirement.
"""
import imaplib
import json
import smtplib
import ssl
import sys
import time
import uuid
from email.message import EmailMessage


def fail(why, out):
    print(json.dumps(out))
    sys.exit("FAIL: " + why)


def message(sender, recipient, subject, body):
    msg = EmailMessage()
    mid = "<%s@hopital.test>" % uuid.uuid4()
    msg["From"], msg["To"], msg["Subject"], msg["Message-ID"] = sender, recipient, subject, mid
    msg.set_content(body)
    return msg, mid


def smoke(cfg):
    out = {"seconds": {}}
    t = [time.time()]

    def mark(step):
        now = time.time()
        out["seconds"][step] = round(now - t[0], 3)
        t[0] = now

    host = cfg["host"]
    ctx = ssl.create_default_context(cafile=cfg["ca"])
    sender, sender_pw = cfg["sender"]
    rcpt, rcpt_pw = cfg["recipient"]

    # IMAP with STARTTLS: LOGINDISABLED before it, LOGIN after it.
    m = imaplib.IMAP4(host, cfg["imap"])
    out["imap_greeting"] = m.welcome.decode()
    out["imap_logindisabled_before_tls"] = "LOGINDISABLED" in m.capabilities
    typ, _ = m.starttls(ssl_context=ctx)
    out["imap_starttls"] = [typ, m.sock.version()]
    typ, data = m.login(rcpt, rcpt_pw)
    out["imap_login"] = [typ, data[0].decode()]
    typ, data = m.select("INBOX")
    out["imap_select"] = [typ, data[0].decode()]
    m.logout()
    mark("imap_starttls")

    # A failed login (wrong password) over IMAPS.
    bad = imaplib.IMAP4_SSL(host, cfg["imaps"], ssl_context=ctx)
    try:
        bad.login(rcpt, "wrong-" + rcpt_pw)
        out["imap_bad_login"] = "OK?!"
    except imaplib.IMAP4.error as e:
        out["imap_bad_login"] = str(e)
    bad.logout()
    mark("imap_bad_login")

    # IMAPS (implicit TLS), kept open for the rest.
    m = imaplib.IMAP4_SSL(host, cfg["imaps"], ssl_context=ctx)
    out["imaps_tls"] = m.sock.version()
    out["imaps_cert_cn"] = dict(x[0] for x in m.sock.getpeercert()["subject"]).get("commonName")
    typ, data = m.login(rcpt, rcpt_pw)
    out["imaps_login"] = [typ, data[0].decode()]
    typ, data = m.select("INBOX")
    out["imaps_select"] = [typ, data[0].decode()]
    mark("imaps")

    # Submission with STARTTLS + AUTH PLAIN, then a refused recipient.
    msg1, mid1 = message(sender, rcpt, "registre smoke STARTTLS", "first test message\n")
    with smtplib.SMTP(host, cfg["submission"], timeout=20) as s:
        s.ehlo()
        out["smtp_starttls"] = s.starttls(context=ctx)[0]
        s.ehlo()
        out["smtp_auth_advertised"] = s.esmtp_features.get("auth")
        out["smtp_login"] = s.login(sender, sender_pw)[0]
        out["smtp_send_refused"] = s.send_message(msg1)
        code, text = s.mail(sender)
        out["smtp_mail_from"] = code
        code, text = s.rcpt(cfg["refused"])
        out["smtp_refused_rcpt"] = [code, text.decode()]
        code, text = s.rcpt("nobody@hopital.test")
        out["smtp_unknown_rcpt"] = [code, text.decode()]
        s.rset()
        mark("submission")

    # Submissions (implicit TLS).
    msg2, mid2 = message(sender, rcpt, "registre smoke implicit TLS", "second test message\n")
    with smtplib.SMTP_SSL(host, cfg["submissions"], context=ctx, timeout=20) as s:
        out["smtps_login"] = s.login(sender, sender_pw)[0]
        out["smtps_send_refused"] = s.send_message(msg2)
    out["msgids"] = [mid1, mid2]
    mark("submissions")

    # Wait for delivery through Postfix and LMTP.
    t0 = time.time()
    uids = {}
    while time.time() - t0 < 30 and len(uids) < 2:
        m.noop()
        for mid in (mid1, mid2):
            if mid not in uids:
                typ, data = m.uid("SEARCH", None, "HEADER", "Message-ID", mid)
                if data[0]:
                    uids[mid] = data[0].split()[-1].decode()
        if len(uids) < 2:
            time.sleep(0.05)
    out["delivery_seconds"] = round(time.time() - t0, 3)
    out["uids"] = uids
    if len(uids) != 2:
        fail("not every message was delivered", out)

    typ, data = m.uid("FETCH", uids[mid1], "(FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    out["fetch"] = typ
    out["fetch_header_has_msgid"] = mid1 in data[0][1].decode()
    out["copy"] = m.uid("COPY", uids[mid2], "Trash")[0]
    out["store_deleted"] = m.uid("STORE", uids[mid1], "+FLAGS", "(\\Deleted)")[0]
    typ, data = m.expunge()
    out["expunge"] = [typ, [d.decode() for d in data if d]]
    typ, data = m.uid("SEARCH", None, "HEADER", "Message-ID", mid1)
    out["after_expunge"] = data[0].decode()
    mark("imap_actions")
    m.logout()
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    scenario, cfg = sys.argv[1], json.loads(sys.argv[2])
    out = {"smoke": smoke}[scenario](cfg)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
