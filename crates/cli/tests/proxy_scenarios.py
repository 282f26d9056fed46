"""Mail clients for proxy_scenarios.rs: each phase drives real client
libraries (imaplib, smtplib, raw sockets for hostile input) through the
`registre proxy` binary and prints one JSON object: what it did, with the
local port of each connection (the traces' `source.session` is
`127.0.0.1:<port>`), so the Rust side can check the traces session by
session.

Usage: python3 proxy_scenarios.py PHASE CONFIG_JSON
"""

import imaplib
import json
import smtplib
import socket
import ssl
import sys
import time
from email.message import EmailMessage

phase = sys.argv[1]
cfg = json.loads(sys.argv[2])
HOST = "localhost"
ctx = ssl.create_default_context(cafile=cfg["ca"])
canary = cfg["canary"]
out = {}


def port_of(sock):
    return sock.getsockname()[1]


def message(n, to):
    m = EmailMessage()
    m["From"] = cfg["user"]
    m["To"] = to
    m["Subject"] = f"Subject {canary} {n}"
    m.set_content(f"Body of message {n}: {canary}\n")
    m.add_attachment(
        f"attachment {canary}\n".encode(),
        maintype="application",
        subtype="octet-stream",
        filename=f"scan-{canary}.bin",
    )
    return m


def read_until(sock, needle, limit=1 << 20):
    data = b""
    while needle not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError(f"closed before {needle!r}: {data[-200:]!r}")
        data += chunk
        if len(data) > limit:
            raise RuntimeError("too much data")
    return data


if phase == "smtp":
    # Submission with STARTTLS on both sides: failed AUTH, three sends with
    # canaries, a send to a refused recipient.
    s = smtplib.SMTP(HOST, cfg["smtp_starttls"], timeout=30)
    s.ehlo()
    s.starttls(context=ctx)
    s.ehlo()
    out["bad_auth_port"] = port_of(s.sock)
    try:
        s.login(cfg["user"], "wrong-" + cfg["password"])
        out["bad_auth"] = "accepted?!"
    except smtplib.SMTPAuthenticationError as e:
        out["bad_auth"] = e.smtp_code
    s.quit()

    s = smtplib.SMTP(HOST, cfg["smtp_starttls"], timeout=30)
    s.starttls(context=ctx)
    out["send_port"] = port_of(s.sock)
    s.login(cfg["user"], cfg["password"])
    for n in (1, 2, 3):
        s.send_message(message(n, cfg["user"]))
    try:
        s.send_message(message(4, cfg["refused"]))
        out["refused"] = "accepted?!"
    except smtplib.SMTPRecipientsRefused as e:
        out["refused"] = list(e.recipients.values())[0][0]
    s.quit()

elif phase == "imap":
    # Failed login (implicit TLS listener).
    m = imaplib.IMAP4_SSL(HOST, cfg["imap_implicit"], ssl_context=ctx)
    out["bad_login_port"] = port_of(m.sock)
    try:
        m.login(cfg["user"], "wrong-" + cfg["password"])
        out["bad_login"] = "OK?!"
    except imaplib.IMAP4.error:
        out["bad_login"] = "NO"
    m.logout()

    # The session, through the STARTTLS listener.
    m = imaplib.IMAP4(HOST, cfg["imap_starttls"], timeout=30)
    caps = m.capabilities
    out["pre_tls_caps"] = list(caps)
    m.starttls(ssl_context=ctx)
    out["session_port"] = port_of(m.sock)
    typ, _ = m.login(cfg["user"], cfg["password"])
    out["login"] = typ
    typ, data = m.capability()
    out["caps"] = data[0].decode().split()
    m.select("INBOX")
    typ, data = m.uid("SEARCH", None, "ALL")
    uids = data[0].decode().split()
    out["uids"] = uids
    read, flagged, moved, deleted = uids[0], uids[0], uids[1], uids[2]
    typ, data = m.uid("FETCH", read, "(BODY.PEEK[])")
    out["fetched_bytes"] = len(data[0][1])
    out["read"] = read
    out["mark"] = m.uid("STORE", flagged, "+FLAGS", "(\\Seen)")[0]
    out["move"] = m.uid("MOVE", moved, "Trash")[0]
    out["moved"] = moved
    out["delete"] = m.uid("STORE", deleted, "+FLAGS", "(\\Deleted)")[0]
    out["deleted"] = deleted
    out["expunge"] = m.expunge()[0]
    typ, data = m.append("Sent", "\\Seen", None, message(5, cfg["user"]).as_bytes())
    out["append"] = typ

    # IDLE: a second connection deposits a message; the first one hears of
    # it while idling.
    tag = m._new_tag().decode()
    m.send(f"{tag} IDLE\r\n".encode())
    line = m.readline()
    out["idle_continuation"] = line.decode().strip()
    other = imaplib.IMAP4_SSL(HOST, cfg["imap_implicit"], ssl_context=ctx)
    out["depositor_port"] = port_of(other.sock)
    other.login(cfg["user"], cfg["password"])
    other.append("INBOX", None, None, message(6, cfg["user"]).as_bytes())
    other.logout()
    heard = b""
    while b"EXISTS" not in heard:
        heard += m.readline()
    out["idle_heard_exists"] = True
    m.send(b"DONE\r\n")
    while True:
        line = m.readline()
        if line.startswith(tag.encode()):
            out["idle_done"] = line.decode().split()[1]
            break
    out["logout"] = m.logout()[0]

elif phase == "outage":
    # While the journal is down: the spool takes the traces.
    m = imaplib.IMAP4_SSL(HOST, cfg["imap_implicit"], ssl_context=ctx)
    out["port"] = port_of(m.sock)
    out["login"] = m.login(cfg["user"], cfg["password"])[0]
    m.select("INBOX")
    typ, data = m.uid("SEARCH", None, "ALL")
    uid = data[0].decode().split()[0]
    out["fetch"] = m.uid("FETCH", uid, "(BODY.PEEK[TEXT])")[0]
    out["uid"] = uid
    out["logout"] = m.logout()[0]

elif phase == "hostile":
    u, pw = cfg["hostile_user"], cfg["hostile_password"]
    port = cfg["imap_implicit"]

    def tls():
        raw = socket.create_connection((HOST, port), timeout=60)
        s = ctx.wrap_socket(raw, server_hostname=HOST)
        read_until(s, b"\r\n")
        return s

    def login(s, tag="L"):
        s.sendall(f'{tag} LOGIN "{u}" "{pw}"\r\n'.encode())
        read_until(s, f"{tag} OK".encode())

    # 1. Garbage: the server says BAD, the proxy keeps going.
    s = tls()
    s.sendall(b"\x00\x01\x02 garbage \xff\xfe\r\nG1 NOOP\r\n")
    data = read_until(s, b"G1 OK")
    out["garbage"] = "BAD" in data.decode(errors="replace")
    s.close()

    # 2. A literal of 100 MB (LITERAL+), streamed through.
    s = tls()
    login(s)
    size = 100 * 1000 * 1000
    head = b"From: x@hopital.test\r\nSubject: big " + canary.encode() + b"\r\n\r\n"
    s.sendall(b"B1 APPEND INBOX {%d+}\r\n" % size)
    s.sendall(head)
    left = size - len(head)
    chunk = (canary.encode() + b" " * 1014 + b"\r\n") * 64
    while left > 0:
        n = min(left, len(chunk))
        s.sendall(chunk[:n])
        left -= n
    s.sendall(b"\r\n")
    data = read_until(s, b"B1 ")
    data += read_until(s, b"\r\n") if not data.endswith(b"\r\n") else b""
    out["big_append"] = data.split(b"B1 ")[1][:2].decode()
    out["big_port"] = port_of(s)
    s.sendall(b"B2 LOGOUT\r\n")
    read_until(s, b"B2 OK")
    s.close()

    # 3. A literal over the proxy's bound: the connection is cut before the
    # server sees the command.
    s = tls()
    login(s)
    s.sendall(b"C1 APPEND INBOX {209715200}\r\n")
    try:
        data = s.recv(4096)
        out["over_bound"] = "closed" if not data else data.decode(errors="replace")
    except (ConnectionError, ssl.SSLError):
        out["over_bound"] = "closed"
    s.close()

    # 4. A literal announced and never sent, then the client vanishes.
    s = tls()
    login(s)
    s.sendall(b"D1 APPEND INBOX {5000}\r\n")
    read_until(s, b"+")
    s.sendall(b"x" * 100)
    s.close()

    # 5. A client vanishing mid-command.
    s = tls()
    login(s)
    s.sendall(b"E1 SELECT INBOX\r\nE2 UID FETCH 1:* (BODY.PEEK[])\r\n")
    s.close()

    # 6. STARTTLS injection: a LOGIN sent in clear after STARTTLS, before
    # the handshake, must never reach the server.
    raw = socket.create_connection((HOST, cfg["imap_starttls"]), timeout=30)
    read_until(raw, b"\r\n")
    raw.sendall(f'S1 STARTTLS\r\nS2 LOGIN "{u}" "{pw}"\r\n'.encode())
    time.sleep(0.2)
    data = read_until(raw, b"S1 OK")
    s = ctx.wrap_socket(raw, server_hostname=HOST)
    s.sendall(b"S3 NOOP\r\n")
    data = read_until(s, b"S3 OK")
    out["injected_answered"] = b"S2 " in data
    out["injection_port"] = port_of(s)
    s.sendall(b"S4 LOGOUT\r\n")
    read_until(s, b"S4 OK")
    s.close()

    # 7. A command that needs TLS, sent in clear: refused by the proxy.
    raw = socket.create_connection((HOST, cfg["imap_starttls"]), timeout=30)
    read_until(raw, b"\r\n")
    raw.sendall(f'P1 LOGIN "{u}" "{pw}"\r\n'.encode())
    data = read_until(raw, b"P1 ")
    while not data.split(b"P1 ", 1)[1].endswith(b"\r\n"):
        data += raw.recv(200)
    out["plaintext_login"] = data.decode()
    raw.close()

    # After all this, an ordinary session still works.
    s = tls()
    login(s, "Z1")
    s.sendall(b"Z2 LOGOUT\r\n")
    read_until(s, b"Z2 OK")
    out["still_serving"] = True

else:
    raise SystemExit(f"unknown phase {phase}")

print(json.dumps(out))
