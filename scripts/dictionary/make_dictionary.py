#!/usr/bin/env python3
"""Builds the zstd dictionary that format-3 segments compress records with.

    pip install zstandard
    python3 scripts/dictionary/make_dictionary.py crates/store/src/embedded/records-v1.zdict

The dictionary is trained on SYNTHETIC stored traces only: their shape is
registre's (field names in JCS order, the action vocabulary, the requests and
answers the MSSanté proxy writes, FHIR AuditEvent originals), every personal
value (actor, mailbox, patient, address, session) is random. No trace ever
stored by anyone is in it, so it holds no personal data and needs neither
sealing nor shredding: it ships in the binary and in docs/format.md's reader.

A dictionary, once used by a released version, is never changed: records
name it by its zstd dictionary id. A better one is a new file with a new id.
"""

import json
import random
import string
import sys

import zstandard

RNG = random.Random(20261207)

ACTIONS_MSS = [
    ("connexion", ["LOGIN", "AUTHENTICATE PLAIN", "AUTHENTICATE XOAUTH2", "AUTH PLAIN", "AUTH XOAUTH2"]),
    ("deconnexion", ["LOGOUT", "QUIT"]),
    ("consultation", ["UID FETCH {uid} (BODY.PEEK[] FLAGS)", "UID FETCH {uid} (BODY.PEEK[HEADER] RFC822.SIZE)",
                      "UID FETCH {uid}:{uid2} (UID FLAGS INTERNALDATE RFC822.SIZE)", "FETCH {n} (BODY[])"]),
    ("envoi", ["MAIL FROM:<{mb}> SIZE={size}", "BDAT {size} LAST", "DATA"]),
    ("suppression", ["UID STORE {uid} +FLAGS (\\Deleted)", "UID EXPUNGE {uid}", "EXPUNGE"]),
    ("deplacement", ["UID MOVE {uid} {folder}", "UID MOVE {uid}:{uid2} Trash"]),
    ("copie", ["UID COPY {uid} {folder}"]),
    ("marquage", ["UID STORE {uid} +FLAGS (\\Seen)", "UID STORE {uid} -FLAGS (\\Flagged)"]),
    ("depot", ["APPEND Sent (\\Seen) {{{size}}}", "APPEND Drafts {{{size}}}"]),
]
FOLDERS = ["INBOX", "Sent", "Trash", "Archives", "Drafts", "INBOX/Patients", "Envoyés", "Corbeille"]
SOFTWARE = ["MonLPS 4.2", "DPI Hôpital 11.3", "Messagerie MSSanté 2.1", "Thunderbird 128", "registre-proxy 0.1"]
APP_ACTIONS = ["consultation", "creation", "modification", "suppression", "impression", "export", "recherche"]
RESOURCES = ["/DocumentReference", "/Patient", "/Observation", "/Encounter", "dossier-patient", "compte-rendu",
             "ordonnance", "/v1/traces", "/fhir/AuditEvent"]


def rnd(alphabet, n):
    return "".join(RNG.choice(alphabet) for _ in range(n))


def digits(n):
    return rnd(string.digits, n)


def word(n):
    return rnd(string.ascii_lowercase, n)


def mailbox():
    return f"{word(RNG.randint(4, 9))}.{word(RNG.randint(4, 10))}@{RNG.choice(['hopital', 'chu', 'clinique', 'ch', 'cabinet'])}-{word(5)}.mssante.fr"


def ts(offset=None):
    off = offset or RNG.choice(["+01:00", "+02:00", "Z", "+00:00"])
    return (f"2026-{RNG.randint(1, 12):02d}-{RNG.randint(1, 28):02d}T{RNG.randint(0, 23):02d}:"
            f"{RNG.randint(0, 59):02d}:{RNG.randint(0, 59):02d}.{digits(3)}{off}")


def received():
    return (f"2026-{RNG.randint(1, 12):02d}-{RNG.randint(1, 28):02d}T{RNG.randint(0, 23):02d}:"
            f"{RNG.randint(0, 59):02d}:{RNG.randint(0, 59):02d}.{digits(6)}Z")


def uuid7():
    h = rnd("0123456789abcdef", 32)
    return f"01{h[2:8]}-{h[8:12]}-7{h[13:16]}-{RNG.choice('89ab')}{h[17:20]}-{h[20:32]}"


def actor():
    kind = RNG.random()
    if kind < 0.6:
        return {"auth": RNG.choice(["psc", "apikey", "mtls", "login"]), "id": "8100" + digits(8), "id_type": "rpps"}
    if kind < 0.8:
        return {"auth": "apikey", "id": f"{word(6)}-{word(4)}"}
    return {"id": mailbox()}


def patient():
    return {"id": digits(13) + (digits(2) if RNG.random() < 0.5 else ""),
            "system": RNG.choice(["1.2.250.1.213.1.4.8", "1.2.250.1.213.1.4.10", "urn:oid:1.2.250.1.71.4.2.1"])}


def mss_trace(log, index):
    action, reqs = RNG.choice(ACTIONS_MSS)
    mb = mailbox()
    uid = RNG.randint(1, 200000)
    req = RNG.choice(reqs).format(uid=uid, uid2=uid + RNG.randint(1, 50), n=RNG.randint(1, 900),
                                  mb=mb, size=RNG.randint(300, 9_000_000), folder=RNG.choice(FOLDERS))
    ok = RNG.random() < 0.93
    t = {"action": action, "actor": actor(), "class": "mss", "id": uuid7(), "index": index, "log": log,
         "occurred_at": ts(), "outcome": "success" if ok else "failure", "received_at": received(),
         "request": req}
    if action == "envoi":
        resp = {"status": "250" if ok else RNG.choice(["550", "451", "554"]),
                "text": f"2.0.0 Ok: queued as {rnd(string.ascii_uppercase + string.digits, 10)}" if ok
                else "5.1.1 <" + mailbox() + ">: Recipient address rejected"}
    else:
        resp = {"status": "OK" if ok else RNG.choice(["NO", "BAD"]),
                "text": RNG.choice(["Completed (0.001 + 0.000 secs).", "Fetch completed (0.002 + 0.000 secs).",
                                    "Logged in", "Store completed (0.001 secs).", "Move completed."]) if ok
                else RNG.choice(["[AUTHENTICATIONFAILED] Authentication failed.", "[UNAVAILABLE] journal unavailable"])}
    t["response"] = resp
    t["source"] = {"ip": f"10.{RNG.randint(0, 255)}.{RNG.randint(0, 255)}.{RNG.randint(1, 254)}",
                   "session": rnd("0123456789abcdef", 16), "software": RNG.choice(SOFTWARE)}
    target = {"folder": RNG.choice(FOLDERS), "mailbox": mb}
    if action in ("consultation", "suppression", "deplacement", "copie", "marquage"):
        target["uids"] = str(uid) if RNG.random() < 0.7 else f"{uid}:{uid + RNG.randint(1, 40)}"
    if action == "envoi":
        target = {"mailbox": mb, "message_id": f"<{rnd(string.ascii_lowercase + string.digits, 20)}@{word(6)}.mssante.fr>",
                  "recipients": [mailbox() for _ in range(RNG.randint(1, 3))], "size": RNG.randint(300, 9_000_000)}
    if action in ("depot",):
        target["size"] = RNG.randint(300, 900000)
    if RNG.random() < 0.25:
        target["patient"] = patient()
    t["target"] = dict(sorted(target.items()))
    return t


def audit_event(t):
    return {
        "action": RNG.choice(["R", "C", "U", "D", "E"]),
        "agent": [{"requestor": True, "type": {"coding": [{"code": "humanuser", "system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type"}]},
                   "who": {"identifier": {"system": "urn:oid:1.2.250.1.71.4.2.1", "value": t["actor"]["id"]}},
                   "name": f"{word(6).capitalize()} {word(8).upper()}"},
                  {"requestor": False, "type": {"coding": [{"code": "110150", "system": "http://dicom.nema.org/resources/ontology/DCM", "display": "Application"}]},
                   "who": {"display": RNG.choice(SOFTWARE)}}],
        "entity": [{"what": {"identifier": {"system": "urn:oid:1.2.250.1.213.1.4.8", "value": digits(13)}},
                    "type": {"code": "1", "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "display": "Person"},
                    "role": {"code": "1", "system": "http://terminology.hl7.org/CodeSystem/object-role", "display": "Patient"}}],
        "outcome": "0",
        "recorded": t["occurred_at"],
        "resourceType": "AuditEvent",
        "source": {"observer": {"display": RNG.choice(SOFTWARE)}, "site": f"{word(7)}"},
        "subtype": [{"code": RNG.choice(["read", "search", "create", "update"]), "system": "http://hl7.org/fhir/restful-interaction"}],
        "type": {"code": "rest", "display": "RESTful Operation", "system": "http://terminology.hl7.org/CodeSystem/audit-event-type"},
    }


def app_trace(log, index):
    t = {"action": RNG.choice(APP_ACTIONS), "actor": actor(), "class": "applicative", "id": uuid7(),
         "index": index, "log": log, "occurred_at": ts(), "outcome": "success" if RNG.random() < 0.95 else "failure",
         "received_at": received()}
    if RNG.random() < 0.3:
        ev = audit_event(t)
        t["original"] = {"format": "fhir+json", "text": json.dumps(ev, separators=(",", ":"), sort_keys=True, ensure_ascii=False)}
    t["request"] = RNG.choice(["GET /fhir/Patient/" + digits(6), "GET /v1/traces?actor=8100" + digits(8) + "&limit=100",
                               "ouverture du dossier", "GET /fhir/DocumentReference?patient=" + digits(6)])
    t["response"] = {"status": RNG.choice(["200", "201", "404", "403"]), "text": f"{RNG.randint(0, 100)} traces returned"}
    t["source"] = {"host": f"poste-{RNG.randint(1, 400)}.{word(8)}.fr", "ip": f"172.16.{RNG.randint(0, 255)}.{RNG.randint(1, 254)}",
                   "software": RNG.choice(SOFTWARE)}
    t["target"] = {"patient": patient(), "resource": RNG.choice(RESOURCES)}
    return dict(sorted(t.items()))


def tech_trace(log, index):
    return {"action": RNG.choice(["erreur", "demarrage", "arret", "configuration", "x-sauvegarde"]), "actor": {"id": f"registre-{word(4)}"},
            "class": "technique", "id": uuid7(), "index": index, "log": log, "occurred_at": ts(),
            "outcome": RNG.choice(["success", "failure"]), "received_at": received(),
            "request": RNG.choice(["checkpoint", "purge", "policy set", "node start"]),
            "response": {"status": RNG.choice(["ok", "error"]), "text": "storage error on log mss: " + RNG.choice(["No space left on device", "Input/output error"])},
            "source": {"host": f"node-{RNG.randint(1, 4)}", "software": "registre 0.1.0"}}


def canonical(t):
    # JCS of these values: keys sorted, no spaces, UTF-8 (no floats here).
    return json.dumps(t, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    samples = []
    for i in range(30000):
        kind = RNG.random()
        if kind < 0.6:
            samples.append(canonical(mss_trace("mss", i)))
        elif kind < 0.9:
            samples.append(canonical(app_trace("applicative", i)))
        else:
            samples.append(canonical(tech_trace("technique", i)))
    d = zstandard.train_dictionary(8192, samples, dict_id=0x52474431)  # "RGD1"
    with open(sys.argv[1], "wb") as f:
        f.write(d.as_bytes())
    c = zstandard.ZstdCompressor(level=3, dict_data=d)
    test = samples[:2000]
    raw = sum(map(len, test))
    packed = sum(len(c.compress(s)) for s in test)
    print(f"dictionary id {d.dict_id():#x}, {len(d.as_bytes())} bytes; "
          f"on its own samples: {raw / len(test):.0f} -> {packed / len(test):.0f} B per record")


if __name__ == "__main__":
    main()
