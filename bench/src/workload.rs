//! Deterministic synthetic traces: ~430 B of JSON each, 50,000 actors,
//! 20,000 mailboxes, a realistic mix of MSSanté actions. The scale mode's
//! traces (`scale_trace`) add the patient a message concerns on one trace in
//! four (100,000 patients) and take their action time from the caller.

pub struct Gen {
    state: u64,
}

const ACTIONS: [(&str, &str); 6] = [
    ("consultation", "UID FETCH {uid} (BODY.PEEK[] FLAGS)"),
    (
        "consultation",
        "UID FETCH {uid} (BODY.PEEK[HEADER] RFC822.SIZE)",
    ),
    ("envoi", "MAIL FROM:<{mb}> SIZE=48213"),
    ("suppression", "UID STORE {uid} +FLAGS (\\\\Deleted)"),
    ("deplacement", "UID MOVE {uid} Archives"),
    ("connexion", "AUTHENTICATE PLAIN {120 bytes}"),
];

pub const ACTORS: u64 = 50_000;
pub const MAILBOXES: u64 = 20_000;
pub const PATIENTS: u64 = 100_000;

impl Gen {
    pub fn new(seed: u64) -> Gen {
        Gen { state: seed | 1 }
    }

    fn next(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn actor(&mut self) -> String {
        format!("8100{:08}", self.next() % ACTORS)
    }

    /// One trace as JSON.
    pub fn trace(&mut self) -> String {
        self.build(None, false)
    }

    /// One trace of the scale mode as JSON: `trace()`'s shape, with
    /// `occurred_at` as given (RFC 3339; the scale mode passes the time the
    /// batch is made, so time ranges select a slice of the journal) and, on
    /// one trace in four, a patient (INS-NIR-shaped identifier and its OID).
    pub fn scale_trace(&mut self, occurred_at: &str) -> String {
        self.build(Some(occurred_at), true)
    }

    /// `trace()` draws exactly what it drew before the scale mode existed:
    /// the side-by-side bench's traces do not change.
    fn build(&mut self, occurred_at: Option<&str>, patients: bool) -> String {
        let actor = self.actor();
        let m = self.next() % MAILBOXES;
        let mailbox = format!("prenom.nom{m:05}@hopital-{:02}.mssante.fr", m % 97);
        let (action, req) = ACTIONS[(self.next() % ACTIONS.len() as u64) as usize];
        let uid = 1000 + self.next() % 90_000;
        let req = req
            .replace("{uid}", &uid.to_string())
            .replace("{mb}", &mailbox);
        let (status, text) = if action == "envoi" {
            ("250", "2.0.0 Ok: queued as 4F2A1C3B9D")
        } else {
            ("OK", "Completed (0.001 + 0.000 secs).")
        };
        let ms = self.next() % 1000;
        let session = self.next();
        let occurred_at = occurred_at.map_or_else(
            || format!("2026-11-28T15:42:07.{ms:03}+01:00"),
            str::to_owned,
        );
        let patient = if patients && self.next().is_multiple_of(4) {
            format!(
                r#","patient":{{"id":"2{:014}","system":"urn:oid:1.2.250.1.213.1.4.8"}}"#,
                self.next() % PATIENTS
            )
        } else {
            String::new()
        };
        format!(
            r#"{{"class":"mss","occurred_at":"{occurred_at}","actor":{{"id":"{actor}","id_type":"rpps","auth":"psc"}},"action":"{action}","target":{{"mailbox":"{mailbox}","folder":"INBOX","uids":"{uid}"{patient}}},"request":"{req}","response":{{"status":"{status}","text":"{text}"}},"outcome":"success","source":{{"ip":"10.1.{}.{}","software":"MonLPS 4.2","session":"{session:016x}"}}}}"#,
            session % 200,
            (session >> 8) % 250
        )
    }
}
