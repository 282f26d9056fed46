//! Deterministic synthetic traces: ~430 B of JSON each, 50,000 actors,
//! 20,000 mailboxes, a realistic mix of MSSanté actions.

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
        format!(
            r#"{{"class":"mss","occurred_at":"2026-11-28T15:42:07.{ms:03}+01:00","actor":{{"id":"{actor}","id_type":"rpps","auth":"psc"}},"action":"{action}","target":{{"mailbox":"{mailbox}","folder":"INBOX","uids":"{uid}"}},"request":"{req}","response":{{"status":"{status}","text":"{text}"}},"outcome":"success","source":{{"ip":"10.1.{}.{}","software":"MonLPS 4.2","session":"{session:016x}"}}}}"#,
            session % 200,
            (session >> 8) % 250
        )
    }
}
