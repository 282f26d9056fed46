#!/usr/bin/env python3
"""Drives the submission relay end to end (crates/proxy/tests/smtp_e2e.rs).

usage: smtp_e2e.py SCENARIO CONFIG_JSON
CONFIG_JSON: host, implicit (proxy port: implicit TLS toward clients,
STARTTLS upstream to Dovecot submission), starttls (proxy port: STARTTLS
toward clients, implicit TLS upstream to Dovecot submissions), ca, user,
password, recipient, refused, canary, run.

Scenarios (one JSON object on the last line of stdout):
  main  through `implicit`: AUTH, a message with a canary subject, body and
        attachment, a send to the refused recipient only, a send to the
        recipient and the refused one, QUIT. Through `starttls`: EHLO (AUTH
        hidden, STARTTLS offered), STARTTLS, EHLO (AUTH offered, no
        STARTTLS), a wrong password, AUTH, a message, QUIT. Then a raw
        client that sends commands behind STARTTLS in the same packet.
  down  the journal is down: AUTH is refused (454), MAIL FROM is refused
        (451) and the RCPT and DATA after it (503), nothing reaches the
        server.
"""
import json
import smtplib
import socket
import ssl
import sys
from email.message import EmailMessage

cfg = json.loads(sys.argv[2])
ctx = ssl.create_default_context(cafile=cfg["ca"])
host, user, pw, canary = cfg["host"], cfg["user"], cfg["password"], cfg["canary"]
out = {}


def message(n, to):
    msg = EmailMessage()
    msg["From"], msg["To"] = user, ", ".join(to)
    msg["Subject"] = "%s subject %d" % (canary, n)
    msg["Message-ID"] = "<s%d-%s@hopital.test>" % (n, cfg["run"])
    msg.set_content("Bonjour,\n%s body line %d\n.\n..two dots\n" % (canary, n))
    msg.add_attachment(
        ("%s attachment %d" % (canary, n)).encode(),
        maintype="application",
        subtype="pdf",
        filename="%s-%d.pdf" % (canary, n),
    )
    return msg


def main():
    # Implicit TLS toward the proxy, STARTTLS from the proxy to Dovecot.
    with smtplib.SMTP_SSL(host, cfg["implicit"], context=ctx, timeout=30) as s:
        out["implicit_ehlo"] = s.ehlo()[0]
        out["implicit_features"] = sorted(s.esmtp_features)
        out["implicit_login"] = s.login(user, pw)[0]
        out["sent_1"] = s.send_message(message(1, [cfg["recipient"]]))
        try:
            s.send_message(message(2, [cfg["refused"]]))
            out["refused_only"] = "sent?!"
        except smtplib.SMTPRecipientsRefused as e:
            out["refused_only"] = {k: [c, t.decode()] for k, (c, t) in e.recipients.items()}
        out["sent_3"] = {
            k: [c, t.decode()]
            for k, (c, t) in s.send_message(message(3, [cfg["recipient"], cfg["refused"]])).items()
        }

    # STARTTLS toward the proxy, implicit TLS from the proxy to Dovecot.
    with smtplib.SMTP(host, cfg["starttls"], timeout=30) as s:
        s.ehlo()
        out["plain_features"] = sorted(s.esmtp_features)
        out["starttls"] = s.starttls(context=ctx)[0]
        s.ehlo()
        out["tls_features"] = sorted(s.esmtp_features)
        try:
            s.login(user, "wrong-" + pw)
            out["bad_login"] = "OK?!"
        except smtplib.SMTPAuthenticationError as e:
            out["bad_login"] = e.smtp_code
        out["starttls_login"] = s.login(user, pw)[0]
        out["sent_4"] = s.send_message(message(4, [cfg["recipient"]]))

    # Commands injected behind STARTTLS, in the same packet.
    raw = socket.create_connection((host, cfg["starttls"]), timeout=30)
    f = raw.makefile("rb")

    def reply(stream):
        lines = []
        while True:
            line = stream.readline().decode()
            lines.append(line.rstrip("\r\n"))
            if len(line) < 4 or line[3] != "-":
                return lines

    reply(f)
    raw.sendall(b"EHLO injector\r\n")
    reply(f)
    raw.sendall(
        b"STARTTLS\r\nMAIL FROM:<evil@attacker.example>\r\nRCPT TO:<%s>\r\n"
        % cfg["recipient"].encode()
    )
    out["injection_starttls"] = reply(f)
    tls = ctx.wrap_socket(raw, server_hostname=host)
    g = tls.makefile("rb")
    # Were the injected commands run, their replies would come first and
    # every later reply would be one step behind.
    tls.sendall(b"EHLO injector\r\n")
    out["injection_ehlo_after_tls"] = reply(g)
    tls.sendall(b"NOOP\r\n")
    out["injection_noop"] = reply(g)
    tls.sendall(b"QUIT\r\n")
    out["injection_quit"] = reply(g)
    tls.close()
    out["msgids"] = ["<s%d-%s@hopital.test>" % (n, cfg["run"]) for n in (1, 3, 4)]


def down():
    with smtplib.SMTP_SSL(host, cfg["implicit"], context=ctx, timeout=30) as s:
        s.ehlo()
        out["auth"] = list(s.docmd("AUTH", "PLAIN"))
        code, text = s.mail(user)
        out["mail"] = [code, text.decode()]
        code, text = s.rcpt(cfg["recipient"])
        out["rcpt"] = [code, text.decode()]
        code, text = s.docmd("DATA")
        out["data"] = [code, text.decode()]
        out["noop"] = s.noop()[0]
    out["auth"][1] = out["auth"][1].decode()


{"main": main, "down": down}[sys.argv[1]]()
print(json.dumps(out))
