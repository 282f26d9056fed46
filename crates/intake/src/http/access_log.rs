//! Every read of the journal is itself a trace (class `applicative`): who
//! (the principal), what (the route and its query: filters, never results),
//! and the answer's status. If that trace cannot be made durable, the read
//! is refused: no untraced access.

use registre_access::Principal;
use registre_model::{Action, Actor, ClassName, Outcome, Response as TraceResponse, Target, Trace};

use super::{AppState, Problem};

/// Records an access; `Err` is the 503 to answer instead of the data.
pub async fn record(
    st: &AppState,
    who: &Principal,
    action: Action,
    route: &str,
    query: &str,
    status: u16,
    summary: String,
) -> Result<(), Problem> {
    record_in(
        st,
        ClassName::APPLICATIVE,
        who,
        action,
        route,
        query,
        status,
        summary,
    )
    .await
}

/// Records an operation on the journal in `class`.
#[allow(clippy::too_many_arguments)]
pub async fn record_in(
    st: &AppState,
    class: &str,
    who: &Principal,
    action: Action,
    route: &str,
    query: &str,
    status: u16,
    summary: String,
) -> Result<(), Problem> {
    let Ok(class) = ClassName::new(class) else {
        return Err(Problem::unavailable("bad class name"));
    };
    if !st.classes.contains(&class) {
        return Err(Problem::unavailable(format!(
            "the {class} class is not configured: this operation cannot be traced"
        )));
    }
    let mut request = if query.is_empty() {
        route.to_owned()
    } else {
        format!("{route}?{query}")
    };
    // Request text must not look like a protocol literal or span lines.
    request = request
        .replace('{', "%7B")
        .replace('}', "%7D")
        .chars()
        .filter(|c| !c.is_control())
        .take(2000)
        .collect();
    let trace = Trace {
        action,
        actor: Actor {
            auth: Some(who.auth.clone()),
            id: who.id.chars().take(256).collect(),
            id_type: None,
        },
        class,
        occurred_at: local_now(),
        original: None,
        outcome: Some(if status < 400 {
            Outcome::Success
        } else {
            Outcome::Failure
        }),
        request: Some(request),
        response: Some(TraceResponse {
            status: status.to_string(),
            text: Some(
                summary
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(1000)
                    .collect(),
            ),
        }),
        source: None,
        target: Some(Target {
            resource: Some(route.to_owned()),
            ..Target::default()
        }),
    };
    st.store.append(vec![trace]).await.map(|_| ()).map_err(|e| {
        Problem::unavailable(format!(
            "this access could not be recorded in the journal ({e}); refused"
        ))
    })
}

/// The server's local time with its UTC offset, RFC 3339.
pub fn local_now() -> String {
    jiff::Zoned::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6f%:z")
        .to_string()
}
