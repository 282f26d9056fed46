//! Rules applied over the store (DESIGN §3): the retention policy of each
//! class. The data controller sets each duration; registre warns when it
//! leaves the recommended range. Purge and legal holds will live here too.

mod retention;

pub use retention::{ClassPolicy, Policy, PolicyChange, PolicyError, recommended_warning};
